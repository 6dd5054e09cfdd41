"""The report's tier-3 section, from a tiny fake results folder: the cell table, the comparisons, the E-versus-2E
verdict both ways, the plots, and the refusal of torn rows."""

import csv
from pathlib import Path

import pytest

from crunet.study.cells import verdict_change
from crunet.study.grid import TIER3_EPOCHS, tier3_option
from crunet.study.report import render_markdown, write_report
from crunet.study.results_csv import COLUMNS, append_row, epochs_file
from crunet.study.seed_stats import Difference, difference, difference_interval, welch

GPU = "cuda:0 (NVIDIA H200)"
GRAD = "grad_stages.0.shared.0.weights.0"


def _row(model: str, seed: int, top1: float, best: float, lr: str = "", extra: str = "", epochs: int = TIER3_EPOCHS,
         params: int = 1000) -> dict:
    option = ",".join(filter(None, (f"lr={lr}" if lr else "", tier3_option(epochs, extra))))
    return {"key": f"fashion-mnist/{model}/{option}/seed{seed}", "dataset": "fashion-mnist", "model": model,
            "option": option, "seed": seed, "params": params, "macs": 2_000_000, "test_top1": top1,
            "best_epoch": epochs - 1, "best_top1": best, "final_epoch": epochs, "train_seconds": 30.0,
            "device": GPU}


def _epochs(results: Path, row: dict, val_top1: list[float], grad: float | None = None) -> None:
    path = results / "epochs" / epochs_file(row["key"])
    path.parent.mkdir(exist_ok=True)
    columns = ["epoch", "val_top1"] + ([GRAD, "orth_penalty"] if grad is not None else [])
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, columns)
        w.writeheader()
        for e, top1 in enumerate(val_top1, 1):
            w.writerow({"epoch": e, "val_top1": top1, **({GRAD: grad * e, "orth_penalty": 0.1 / e} if grad else {})})


def _record(results: Path, row: dict) -> dict:
    append_row(results / "tier3.csv", row)
    return row


@pytest.fixture
def tier12(tmp_path) -> Path:
    """Tiers 1 and 2 as they might stand: one 3-seed cell (its sd 0.20) and a one-run cell."""
    for seed, top1 in enumerate((92.0, 92.2, 91.8)):
        append_row(tmp_path / "tier1.csv", {"key": f"fashion-mnist/crunet_small/-/seed{seed}",
                                            "dataset": "fashion-mnist", "model": "crunet_small", "option": "",
                                            "seed": seed, "params": 1000, "macs": 2_000_000, "test_top1": top1,
                                            "train_seconds": 10.0, "images_per_s": 100.0, "cpu_share": 0.95})
    return tmp_path


@pytest.fixture
def tier3(tier12) -> Path:
    results = tier12
    for seed, (cru, rex) in enumerate([(92.5, 93.0), (92.7, 93.2), (92.3, 92.8)]):
        row = _record(results, _row("crunet_small", seed, cru, cru + 0.3, lr="0.4"))
        _epochs(results, row, [85.0, 90.0, cru])
        _record(results, _row("preresnext_small", seed, rex, rex + 0.3, lr="0.4"))
    for seed, top1 in enumerate((92.9, 93.1)):
        row = _record(results, _row("preresnet_small", seed, top1, top1 + 0.2))
        _epochs(results, row, [86.0, 91.0, top1])
    for extra, grad in (("orth_unique=1", 1.0), ("", 2.0), ("orth_lambda=0", 50.0)):
        row = _record(results, _row("dsfb_resnet32_s16u1", 0, 92.0, 92.4, lr="0.8", extra=extra))
        _epochs(results, row, [84.0, 89.0, 92.0], grad)
    return results


def test_the_cell_table_states_last_and_best_epoch_errors(tier3):
    md = render_markdown(tier3)
    # crunet_small: errors 7.5, 7.3, 7.7 at the last epoch (sd 0.20), best 7.2, 7.0, 7.4; best epoch 19 each
    assert (f"| `crunet_small` | {tier3_option(TIER3_EPOCHS)} | 0.4 | 3 | {GPU} | 1,000 | 7.50 ± 0.20 | 7.20 ± 0.20 | "
            "19.0 |") in md
    # preresnet_small at the default rate: 7.1 and 6.9 (sd sqrt(0.02) = 0.14), best 6.9 and 6.7
    assert (f"| `preresnet_small` | {tier3_option(TIER3_EPOCHS)} | 0.2 | 2 | {GPU} | 1,000 | 7.00 ± 0.14 | "
            "6.80 ± 0.14 |") in md
    assert "| `dsfb_resnet32_s16u1` | " + tier3_option(TIER3_EPOCHS, "orth_lambda=0") + " | 0.8 | 1 |" in md
    assert "last-epoch error is our verdict number" in md


def test_tier3_comparisons_are_welch_over_the_last_epoch_errors(tier3):
    md = render_markdown(tier3)
    cru, rex = [7.5, 7.3, 7.7], [7.0, 6.8, 7.2]
    _, p = welch(cru, rex)
    low, high = difference_interval(cru, rex)
    assert (f"| CRU vs ResNeXt units at equal size | `crunet_small` lr 0.4 | `preresnext_small` lr 0.4 | +0.50 | "
            f"{low:+.2f} to {high:+.2f} | 0.20 | {p:.3f} | 3 vs 3 |") in md
    assert "| ResNeXt vs ResNet units | `preresnext_small` lr 0.4 | `preresnet_small` lr 0.2 | +0.00 |" in md
    # one run a side: Student's with the sd pooled over the tier-3 cells with 2 runs or more, marked †
    # (sum of squares 0.08 + 0.08 + 0.02 over 2 + 2 + 1 df: sd = sqrt(0.036) = 0.19)
    assert ("| DSFB S16U1: no regularizer vs the CIFAR-10 one | `dsfb_resnet32_s16u1` orth_lambda=0 lr 0.8 | "
            "`dsfb_resnet32_s16u1` orth_unique=1 lr 0.8 | +0.00 |") in md
    assert "0.19 pooled (df 5)" in md
    assert "Released-pattern" not in md  # crunet_small_plain_last has not run
    assert "ResNet-32" not in md  # nor resnet32_cifar


def _record_tier1(results: Path, model: str, top1s: tuple[float, ...]) -> None:
    for seed, top1 in enumerate(top1s):
        append_row(results / "tier1.csv", {"key": f"fashion-mnist/{model}/-/seed{seed}", "dataset": "fashion-mnist",
                                           "model": model, "option": "", "seed": seed, "params": 1000,
                                           "macs": 2_000_000, "test_top1": top1, "train_seconds": 10.0,
                                           "images_per_s": 100.0})


def test_each_claim_shows_its_5_epoch_reading_beside_each_tier3_one(tier3):
    claim = "| CRU-Net: at equal size, CRU units beat ResNeXt units |"
    # no 5-epoch ResNeXt cell yet: the claim's 5-epoch side is empty
    assert f"{claim} {TIER3_EPOCHS} epochs, shifts, bf16 | - | - | +0.50 (" in render_markdown(tier3)
    _record_tier1(tier3, "preresnext_small", (93.0, 92.9, 93.1))  # errors 7.0, 7.1, 6.9 against CRU's 8.0, 7.8, 8.2
    for seed, top1 in enumerate((93.0, 93.1, 92.9)):  # the released pattern at ResNeXt's level: 7.0, 6.9, 7.1
        _record(tier3, _row("crunet_small_plain_last", seed, top1, top1 + 0.1, lr="0.4"))
    md = render_markdown(tier3)
    cru5, rex5 = [8.0, 7.8, 8.2], [7.0, 7.1, 6.9]
    cru, released, rex = [7.5, 7.3, 7.7], [7.0, 6.9, 7.1], [7.0, 6.8, 7.2]
    low5, high5 = difference_interval(cru5, rex5)
    low, high = difference_interval(cru, rex)
    low_r, high_r = difference_interval(released, rex)
    assert low5 > 0 and low > 0 and low_r < 0 < high_r  # the data below mean what the expected readings say
    short = f"+1.00 ({low5:+.2f} to {high5:+.2f}) | worse, resolved |"
    # the claim predicts CRU better: resolved worse contradicts it, unresolved does not show it
    assert (f"{claim} {TIER3_EPOCHS} epochs, shifts, bf16 | {short} +0.50 ({low:+.2f} to {high:+.2f}) | "
            "worse, resolved | no | contradicted |") in md
    assert (f"{claim} {TIER3_EPOCHS} epochs, shifts, bf16, the released sharing pattern (last stage plain) | {short} "
            f"+0.00 ({low_r:+.2f} to {high_r:+.2f}) | not resolved | yes: the gap closed (this interval excludes the "
            "5-epoch +1.00) | not shown |") in md
    # the DSFB claims have tier-3 cells but no 5-epoch ones: their tier-3 readings stand alone, one run a side (†)
    assert ("| DSFB: the orthogonality regularizer helps (no regularizer vs with) | "
            f"{TIER3_EPOCHS} epochs, shifts, bf16, the CIFAR-10 regularizer | - | - | +0.00 (") in md
    assert "| not resolved † | - | not shown † |" in md
    _record_tier1(tier3, "dsfb_resnet32_s16u1", (93.0, 92.8))  # the shared-only regularizer at 5 epochs
    for seed, top1 in enumerate((92.6, 92.7)):
        append_row(tier3 / "tier1.csv", {"key": f"fashion-mnist/dsfb_resnet32_s16u1/orth_lambda=0/seed{seed}",
                                          "dataset": "fashion-mnist", "model": "dsfb_resnet32_s16u1",
                                          "option": "orth_lambda=0", "seed": seed, "params": 1000, "macs": 2_000_000,
                                          "test_top1": top1, "train_seconds": 10.0, "images_per_s": 100.0})
    md = render_markdown(tier3)  # a 5-epoch reading beside tier 3's one run a side: no verdict on a change yet
    assert ("| DSFB: the orthogonality regularizer helps (no regularizer vs with) | "
            f"{TIER3_EPOCHS} epochs, shifts, bf16, the CIFAR-10 regularizer | +0.25 (") in md
    assert "| not resolved † | not yet (one run a side) | not shown † |" in md
    assert "DSFB: a shared basis matches" not in md  # resnet32_cifar has not run in tier 3


@pytest.mark.parametrize(("expects", "low", "high", "verdict"), [
    ("better", -0.9, -0.1, "supported"), ("better", 0.1, 0.9, "contradicted"), ("better", -0.4, 0.4, "not shown"),
    ("worse", 0.1, 0.9, "supported"), ("worse", -0.9, -0.1, "contradicted"), ("worse", -0.4, 0.4, "not shown"),
    ("equal", -0.4, 0.4, "not contradicted"), ("equal", 0.1, 0.9, "contradicted"),
    ("equal", -0.9, -0.1, "contradicted")])
def test_a_tier3_reading_supports_or_contradicts_what_its_claim_predicts(expects, low, high, verdict):
    from crunet.study.cells import for_the_claim

    def reading(pooled: bool, interval=(low, high)) -> Difference:
        return Difference([7.0], [7.0], *interval, p=0.05, spread=0.1, df=0, pooled=pooled)

    assert for_the_claim(expects, reading(False)) == verdict
    assert for_the_claim(expects, reading(True)) == verdict + " †"  # one run a side: an indication
    assert for_the_claim(expects, reading(False, (float("nan"), float("nan")))) == "-"  # no interval yet


def test_each_claim_says_what_it_predicts():
    from crunet.study.cells import CLAIMS

    assert [claim.expects for claim in CLAIMS] == ["better", "equal", "worse"]  # CRU beats; DSFB matches; none is worse


def test_the_dsfb_pair_at_2e_is_read_one_run_a_side_against_the_pooled_sd(tier3):
    _record(tier3, _row("dsfb_resnet32_s16u1", 0, 93.6, 93.7, lr="0.8", extra="orth_unique=1",
                        epochs=2 * TIER3_EPOCHS))
    assert "ResNet-32, at 2E" not in render_markdown(tier3)  # ResNet-32's 2E run has not finished
    _record(tier3, _row("resnet32_cifar", 0, 94.0, 94.1, epochs=2 * TIER3_EPOCHS))
    md = render_markdown(tier3)
    # each against its run at E (seed 0): DSFB from 8.00 to 6.40, ResNet-32 not at E yet
    assert "| `dsfb_resnet32_s16u1` orth_unique=1 | 8.00 (1) | 8.00 | 6.40 | -1.60 |" in md
    assert "has not finished yet" in md  # the deciding check, preresnet_small's, has no 2E run
    # errors 6.4 against 6.0: +0.40, held against the sd pooled over the tier-3 cells with 2 runs or more (0.19)
    assert ("| DSFB S16U1 (CIFAR-10 regularizer) vs its unshared ResNet-32, at 2E (40 epochs) | "
            "`dsfb_resnet32_s16u1` 2E (40 epochs) orth_unique=1 lr 0.8 | `resnet32_cifar` 2E (40 epochs) lr 0.2 | "
            "+0.40 |") in md
    claim = ("| DSFB: a shared basis matches the unshared ResNet-32 | 40 epochs (2E), shifts, bf16, the CIFAR-10 "
             "regularizer |")
    row = next(line for line in md.splitlines() if line.startswith(claim))
    # the claim predicts no difference: an unresolved one does not contradict it
    assert row.startswith(f"{claim} - | - | +0.40 (") and row.endswith("| not resolved † | - | not contradicted † |")
    _record_tier1(tier3, "dsfb_resnet32_s16u1", (93.0, 92.8))
    _record_tier1(tier3, "resnet32_cifar", (93.4, 93.2))  # at 5 epochs: +0.40 too
    row = next(line for line in render_markdown(tier3).splitlines() if line.startswith(claim))
    assert row.startswith(f"{claim} +0.40 (") and row.endswith(
        "| not resolved † | not yet (one run a side) | not contradicted † |")


def test_the_cru_claim_at_2e_is_read_over_its_seeds_and_joins_the_claim(tier3):
    claim = "| CRU-Net: at equal size, CRU units beat ResNeXt units | 40 epochs (2E), shifts, bf16 |"
    assert claim not in render_markdown(tier3)  # no 2E run of the pair yet
    for seed, (cru, rex) in enumerate([(93.5, 93.4), (93.7, 93.6), (93.3, 93.2)]):
        _record(tier3, _row("crunet_small", seed, cru, cru, lr="0.4", epochs=2 * TIER3_EPOCHS))
        _record(tier3, _row("preresnext_small", seed, rex, rex, lr="0.4", epochs=2 * TIER3_EPOCHS))
    md = render_markdown(tier3)
    cru, rex = [6.5, 6.3, 6.7], [6.6, 6.4, 6.8]
    _, p = welch(cru, rex)
    low, high = difference_interval(cru, rex)
    assert (f"| CRU vs ResNeXt units at equal size, at 2E (40 epochs) | `crunet_small` 2E (40 epochs) lr 0.4 | "
            f"`preresnext_small` 2E (40 epochs) lr 0.4 | -0.10 | {low:+.2f} to {high:+.2f} | 0.20 | {p:.3f} | "
            "3 vs 3 |") in md
    row = next(line for line in md.splitlines() if line.startswith(claim))
    assert f"| -0.10 ({low:+.2f} to {high:+.2f}) |" in row  # at E it read +0.50, ResNeXt ahead
    assert "at 2E (40 epochs), the released" not in md and "Released-pattern" not in md  # that cell has not run


def test_the_gap_plot_has_a_panel_per_claim_and_the_2e_comparisons_beside_theirs(tier3):
    from crunet.study.cells import CLAIMS, load_tier3
    from crunet.study.epoch_series import comparison_gaps
    from crunet.study.plots import OTHER_COMPARISONS, gap_panels, plot_tier3_gaps

    for row in load_tier3(tier3):
        if row["model"] == "preresnext_small":
            _epochs(tier3, row, [86.0, 91.0, float(row["test_top1"])])
    gaps = comparison_gaps(tier3, load_tier3(tier3))
    panels = gap_panels(tier3, load_tier3(tier3))
    # no ResNet-32 run at E, nor any run at 2E: the DSFB-vs-ResNet claim has no panel yet
    assert list(panels) == [CLAIMS[0].claim, CLAIMS[2].claim, OTHER_COMPARISONS]
    assert sorted(label for group in panels.values() for label in group) == sorted(gaps)  # each line drawn once
    assert [label.split(" (n=")[0] for label in panels[CLAIMS[0].claim]] == ["CRU vs ResNeXt units at equal size"]
    assert "ResNeXt vs ResNet units" in [label.split(" (n=")[0] for label in panels[OTHER_COMPARISONS]]
    for model, top1, extra in (("dsfb_resnet32_s16u1", 93.6, "orth_unique=1"), ("resnet32_cifar", 94.0, "")):
        row = _record(tier3, _row(model, 0, top1, top1, extra=extra, epochs=2 * TIER3_EPOCHS))
        _epochs(tier3, row, [80.0 + e / 4 for e in range(2 * TIER3_EPOCHS)])
    panels = gap_panels(tier3, load_tier3(tier3))
    at_2e = f"{CLAIMS[1].claim}, at 2E ({2 * TIER3_EPOCHS} epochs)"
    assert list(panels) == [CLAIMS[0].claim, at_2e, CLAIMS[2].claim, OTHER_COMPARISONS]
    assert [label.split(" (n=")[0] for label in panels[at_2e]] == [
        f"DSFB S16U1 (CIFAR-10 regularizer) vs its unshared ResNet-32, at 2E ({2 * TIER3_EPOCHS} epochs)"]
    assert next(iter(panels[at_2e].values()))[0] == list(range(1, 2 * TIER3_EPOCHS + 1))
    assert all(max(epochs) <= TIER3_EPOCHS for panel, group in panels.items() if panel != at_2e
               for epochs, _ in group.values())
    assert plot_tier3_gaps(tier3, load_tier3(tier3), tier3 / "gaps.png").stat().st_size > 0


def test_the_convergence_plot_has_a_panel_for_each_claims_cells_and_one_for_the_2e_runs(tier3):
    from crunet.study.cells import load_tier3
    from crunet.study.plots import CRU_CELLS, DSFB_CELLS, convergence_panels

    panels = convergence_panels(tier3, load_tier3(tier3))
    assert list(panels) == [CRU_CELLS, DSFB_CELLS]  # no 2E run logged yet
    assert [label.split(" lr ")[0] for label in panels[CRU_CELLS]] == ["crunet_small", "preresnet_small"]
    assert all(label.startswith("dsfb_resnet32_s16u1") for label in panels[DSFB_CELLS]) and len(panels[DSFB_CELLS]) == 3
    epochs, errors = panels[CRU_CELLS][next(iter(panels[CRU_CELLS]))]  # crunet_small: 85, 90, then its own top-1
    assert epochs == [1, 2, 3] and errors[:2] == pytest.approx([15.0, 10.0])
    row = _record(tier3, _row("preresnet_small", 0, 94.0, 94.0, epochs=2 * TIER3_EPOCHS))
    _epochs(tier3, row, [80.0 + e / 4 for e in range(2 * TIER3_EPOCHS)])
    panels = convergence_panels(tier3, load_tier3(tier3))
    assert list(panels) == [CRU_CELLS, DSFB_CELLS, f"at 2E ({2 * TIER3_EPOCHS} epochs)"]
    assert [label.split(" lr ")[0] for label in panels[f"at 2E ({2 * TIER3_EPOCHS} epochs)"]] == [
        f"preresnet_small 2E ({2 * TIER3_EPOCHS} epochs)"]


def test_doubling_less_than_the_seed_sd_says_e_is_enough(tier3):
    assert "has not finished yet" in render_markdown(tier3)  # no 2E run yet
    _record(tier3, _row("preresnet_small", 0, 93.0, 93.1, epochs=2 * TIER3_EPOCHS))
    md = render_markdown(tier3)
    # seed 0: 7.10 at E, 7.00 at 2E: -0.10, against the E cell's sd sqrt(0.02) = 0.14
    assert "| `preresnet_small` | 7.00 ± 0.14 (2) | 7.10 | 7.00 | -0.10 |" in md
    assert "Doubling changes the error by -0.10 points, less than the seed-to-seed sd 0.14" in md
    assert "are long enough" in md


def test_doubling_more_than_the_seed_sd_says_e_is_not_converged(tier3):
    _record(tier3, _row("preresnet_small", 0, 93.5, 93.6, epochs=2 * TIER3_EPOCHS))
    md = render_markdown(tier3)
    assert "Doubling changes the error by -0.60 points, more than the seed-to-seed sd 0.14" in md
    assert "are not converged" in md


def test_one_seed_at_e_holds_the_difference_against_the_pooled_sd(tier12):
    _record(tier12, _row("preresnet_small", 0, 92.9, 93.0))
    _record(tier12, _row("preresnet_small", 0, 93.5, 93.6, epochs=2 * TIER3_EPOCHS))
    md = render_markdown(tier12)  # no tier-3 cell with 2 runs: tiers 1 and 2's sd, 0.20 (df 2)
    assert "Doubling changes the error by -0.60 points, more than the seed-to-seed sd 0.20 (pooled over the tier-1 " \
           "and tier-2 cells, df 2)" in md


def test_the_report_writes_the_tier3_plots(tier3):
    written = {p.name for p in write_report(tier3)}
    assert {"tier3_convergence.png", "tier3_gaps.png", "tier3_grad_norms.png"} <= written
    for name in ("tier3_convergence.png", "tier3_gaps.png", "tier3_grad_norms.png"):
        assert (tier3 / name).read_bytes()[:4] == b"\x89PNG"
        assert f"]({name})" in (tier3 / "results.md").read_text()


def test_without_tier3_rows_the_report_is_unchanged(tier12):
    before = render_markdown(tier12)
    assert "Tier 3" not in before
    (tier12 / "tier3.csv").write_text(",".join(COLUMNS) + "\n")  # the header alone: no rows yet
    assert render_markdown(tier12) == before
    _record(tier12, _row("crunet_small", 0, 92.5, 92.8, lr="0.4"))
    after = render_markdown(tier12)
    assert after.startswith(before) and "## Tier 3" in after  # the tier-3 section only adds to the end
    assert {p.name for p in write_report(tier12)} & {"tier3_grad_norms.png"} == set()  # no DSFB runs


def test_a_torn_row_is_refused_by_file_and_line(tier3):
    with open(tier3 / "tier3.csv", "a") as f:
        f.write("fashion-mnist/crunet_small/lr=0.4/seed5,fashion-mnist,crunet_small,lr=0.4,5,10")  # killed mid-write
    with pytest.raises(ValueError, match=r"tier3\.csv:13: malformed or torn row"):
        render_markdown(tier3)


def test_a_row_without_a_number_is_refused_by_file_and_line(tier12):
    _record(tier12, {**_row("crunet_small", 0, 92.5, 92.8, lr="0.4"), "best_top1": ""})
    with pytest.raises(ValueError, match=r"tier3\.csv:2: malformed row \(empty best_top1\)"):
        render_markdown(tier12)
    with open(tier12 / "tier1.csv", "a") as f:
        f.write("fashion-mnist/x/-/seed9,fashion-mnist,x,,9,1000,1,ninety" + "," * (len(COLUMNS) - 8) + "\n")
    with pytest.raises(ValueError, match=r"tier1\.csv:5: malformed row \(test_top1='ninety' is not a number\)"):
        render_markdown(tier12)


def test_a_torn_epochs_line_is_refused_by_file_and_line(tier3):
    path = tier3 / "epochs" / epochs_file(_row("crunet_small", 1, 0, 0, lr="0.4")["key"])
    with open(path, "a") as f:
        f.write("4")  # killed mid-write
    with pytest.raises(ValueError, match=rf"{path.name}:5: malformed or torn row"):
        write_report(tier3)


def _diff(candidate: list[float], reference: list[float]) -> Difference:
    return difference(candidate, reference, (float("nan"), 0))


def test_a_verdict_changes_only_when_tier_3_says_something_new():
    worse = _diff([8.0, 7.8, 8.2], [7.0, 7.1, 6.9])  # +1.00, resolved
    assert verdict_change(worse, _diff([7.5, 7.3, 7.7], [7.0, 6.8, 7.2])) == "no"  # +0.50, still resolved
    assert verdict_change(worse, _diff([6.0, 6.1, 5.9], [7.0, 6.8, 7.2])) == "yes: reversed"
    assert verdict_change(_diff([7.0, 7.5], [7.1, 7.3]), worse) == "yes: now resolved"
    # 2 seeds a side: +0.40, an interval of about -3.4 to +4.2 holds both 0 and the 5-epoch +1.00: nothing decided
    wide = _diff([7.0, 7.6], [6.8, 7.0])
    assert wide.low < 0 < 1.0 < wide.high
    assert verdict_change(worse, wide) == "undecided (this interval holds the 5-epoch +1.00)"
    # a tight interval about 0 that excludes +1.00: the gap closed
    assert verdict_change(worse, _diff([7.0, 6.9, 7.1], [7.0, 6.8, 7.2])).startswith("yes: the gap closed")
    one_run = difference([7.0], [6.9, 7.1], (0.1, 4))
    assert verdict_change(worse, one_run) == "not yet (one run a side)"


def test_each_comparisons_gap_is_the_mean_error_difference_at_each_epoch(tier3):
    from crunet.study.cells import load_tier3
    from crunet.study.epoch_series import comparison_gaps

    gaps = comparison_gaps(tier3, load_tier3(tier3))
    # crunet_small: 15, 10, then 7.5 (mean of 7.5, 7.3, 7.7); preresnet_small: 14, 9, then 7.0 (mean of 7.1, 6.9)
    epochs, values = gaps["CRU vs ResNet units (n=3 vs 2)"]
    assert epochs == [1, 2, 3] and values == pytest.approx([1.0, 1.0, 0.5])
    assert not any(label.startswith("CRU vs ResNeXt") for label in gaps)  # preresnext_small logged no epochs


def test_the_gradient_table_reads_each_regularizer_setting_at_its_first_lowest_and_last_epoch(tier3):
    md = render_markdown(tier3)
    # the fixture logs grad x epoch for each setting (1, 2 and 50) and a penalty of 0.1 / epoch
    lines = [line for line in md.splitlines() if line.startswith(("| `stages.0.shared`", "| orthogonality penalty"))]
    assert lines == [
        "| `stages.0.shared` | CIFAR-10 regularizer (orth_unique=1) | 1 | 1 | 1 (1) | 3 (3) | 3.00 |",
        "| `stages.0.shared` | shared-only regularizer | 1 | 2 | 2 (1) | 6 (3) | 3.00 |",
        "| `stages.0.shared` | no regularizer (orth_lambda=0) | 1 | 50 | 50 (1) | 150 (3) | 3.00 |",
        "| orthogonality penalty | CIFAR-10 regularizer (orth_unique=1) | 1 | 0.1 | 0.0333 (3) | 0.0333 (3) | 1.00 |",
        "| orthogonality penalty | shared-only regularizer | 1 | 0.1 | 0.0333 (3) | 0.0333 (3) | 1.00 |",
        "| orthogonality penalty | no regularizer (orth_lambda=0) | 1 | 0.1 | 0.0333 (3) | 0.0333 (3) | 1.00 |"]
