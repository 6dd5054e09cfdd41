import csv
import math
from pathlib import Path

import pytest

from crunet.study.cells import cells, load, pooled_seed_sd
from crunet.study.report import render_markdown, write_report
from crunet.study.results_csv import append_row
from crunet.study.seed_stats import difference_interval, pooled_test, welch

REPO = Path(__file__).resolve().parents[2]


def _row(model: str, seed: int, top1: float, option: str = "", dataset: str = "fashion-mnist") -> dict:
    key = f"{dataset}/{model}/{option or '-'}/seed{seed}"
    return {"key": key, "dataset": dataset, "model": model, "option": option, "seed": seed, "params": 1000,
            "macs": 2_000_000, "test_top1": top1, "train_seconds": 10.0, "images_per_s": 100.0, "cpu_share": 0.95}


@pytest.fixture
def results(tmp_path) -> Path:
    for seed, (cru, rex) in enumerate([(92.0, 91.0), (92.2, 91.1), (91.8, 90.9)]):
        append_row(tmp_path / "tier1.csv", _row("crunet_small", seed, cru))
        append_row(tmp_path / "tier1.csv", _row("preresnext_small", seed, rex))
    for option, grad in (("", 1.0), ("orth_lambda=0", 50.0)):
        row = _row("dsfb_resnet32_s16u1", 0, 88.0, option)
        append_row(tmp_path / "tier1.csv", row)
        epochs = tmp_path / "epochs" / (row["key"].replace("/", "__") + ".csv")
        epochs.parent.mkdir(exist_ok=True)
        with open(epochs, "w", newline="") as f:
            w = csv.DictWriter(f, ["epoch", "grad_stages.0.shared.0.weights.0", "orth_penalty"])
            w.writeheader()
            w.writerows([{"epoch": e, "grad_stages.0.shared.0.weights.0": grad * e, "orth_penalty": 0.1 / e}
                         for e in (1, 2)])
    append_row(tmp_path / "tier2.csv", _row("crunet_small", 0, 90.0, "size=0.5"))
    for lr, top1 in (("0.1", 90.5), ("0.2", 91.5)):
        append_row(tmp_path / "lr-check.csv", _row("crunet_small", 0, top1, f"lr={lr},holdout=10000"))
    return tmp_path


def test_markdown_states_each_cell_and_comparison(results):
    md = render_markdown(results)
    assert "| fashion-mnist | `crunet_small` | - | 0.2 | 3 | 8.00 ± 0.20 | 1,000 | 2.0 | 10 | 100 | 0.95 |" in md
    assert "| fashion-mnist | `crunet_small` | size=0.5 | 0.2 | 1 | 10.00 ± - |" in md
    _, p = welch([8.0, 7.8, 8.2], [9.0, 8.9, 9.1])
    low, high = difference_interval([8.0, 7.8, 8.2], [9.0, 8.9, 9.1])
    assert -1.5 < low < -1.0 < high < -0.5  # excludes 0: resolved
    row = f"| `crunet_small` lr 0.2 | `preresnext_small` lr 0.2 | -1.00 | {low:+.2f} to {high:+.2f} | 0.20 | {p:.3f} |"
    assert row + " 3 vs 3 |" in md
    assert "| `crunet_small` | 90.50 | 91.50 | 0.2 |" in md  # the learning-rate check picks 0.2
    assert "bf16" not in md  # no bf16 runs: no comparison row
    assert "at half size" not in md  # only one side of the size=0.5 comparison has run


def test_tier2_comparisons_pair_their_cells_even_with_one_seed(results):
    append_row(results / "tier2.csv", _row("preresnext_small", 0, 91.0, "size=0.5"))
    append_row(results / "tier2.csv", _row("dsfb_resnet56_s16u1", 0, 92.0))
    md = render_markdown(results)
    # one run a side: Student's interval with the sd pooled over the two 3-seed cells, sqrt((0.08 + 0.02) / 4) = 0.158,
    # 4 degrees of freedom: +1.00 +- 2.776 * 0.158 * sqrt(2) = +0.38 to +1.62, t = 4.47, p = 0.011
    assert ("| CRU vs ResNeXt units at half size | fashion-mnist | `crunet_small` size=0.5 lr 0.2 | "
            "`preresnext_small` size=0.5 lr 0.2 | +1.00 | +0.38 to +1.62 † | 0.16 pooled (df 4) | 0.011 † | "
            "1 vs 1 |") in md
    assert "ResNet-56" not in md  # its reference has not run


def test_claims_compare_each_family_at_its_rate(checked_rates):
    for seed, (at_default, at_best, rex) in enumerate([(92.0, 92.5, 91.0), (92.2, 92.6, 91.1), (91.8, 92.4, 90.9)]):
        append_row(checked_rates / "tier1.csv", _row("crunet_small", seed, at_default))
        append_row(checked_rates / "tier1.csv", _row("crunet_small", seed, at_best, "lr=0.4"))
        append_row(checked_rates / "tier1.csv", _row("preresnext_small", seed, rex))
    md = render_markdown(checked_rates)
    assert "| fashion-mnist | `crunet_small` | - | 0.4 | 3 | 7.50 ± 0.10 |" in md
    assert "| fashion-mnist | `crunet_small` | - | 0.2 | 3 | 8.00 ± 0.20 |" in md
    assert "| `crunet_small` lr 0.4 | `preresnext_small` lr 0.2 | -1.50 |" in md  # crunet_small's rate is 0.4
    assert "Rates the claims use" in md and "`crunet_small` 0.4" in md


def test_welch_by_hand():
    # means 2.5 and 5, variances 5/3 and 20/3, n = 4: t = -2.5 / sqrt(25/12) = -sqrt(3), df = 4.41
    t, p = welch([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0])
    assert t == pytest.approx(-(3**0.5), rel=1e-9) and 0.14 < p < 0.16
    assert all(math.isnan(v) for v in welch([1.0], [2.0, 3.0]))  # one run cannot give a spread
    # by hand: -2.5 +- t(0.975, df) * sqrt(25/12), df = (25/12)^2 / ((5/12)^2/3 + (20/12)^2/3) = 4.41: t = 2.677
    low, high = difference_interval([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0])
    assert low == pytest.approx(-2.5 - 2.677 * (25 / 12) ** 0.5, abs=0.005) and high == pytest.approx(-5 - low)


def test_a_side_without_spread_is_tested_quietly():
    # two runs of equal error (tier 2's DSFB at half size: 7.70 twice) against 6.98 and 6.97: Welch's df and t come
    # from the other side alone, t = 0.725 / sqrt(5e-5 / 2) = 145; scipy warns of precision loss on such a side
    import warnings

    equal, other = [100 - 92.30, 100 - 92.30], [100 - 93.02, 100 - 93.03]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t, _ = welch(equal, other)
        low, high = difference_interval(equal, other)
    assert t == pytest.approx(0.725 / (5e-5 / 2) ** 0.5, rel=1e-9)
    assert (low + high) / 2 == pytest.approx(0.725, abs=1e-12)


def test_time_plot_only_from_runs_that_had_their_cores(results):
    from crunet.study.report import available_plots

    rows = load(results)
    assert "error_vs_time.png" in available_plots(rows, {})
    assert "error_vs_time.png" not in available_plots([{**r, "cpu_share": "0.5"} for r in rows], {})


def test_gpu_runs_count_in_the_errors_but_not_in_the_times(results):
    from crunet.study.report import available_plots

    for seed in range(2):
        append_row(results / "tier2.csv", {**_row("resnet32_cifar", seed, 92.0), "train_seconds": 30.0,
                                           "device": "cuda:0 (NVIDIA H200)"})
    md = render_markdown(results)
    assert "| fashion-mnist | `resnet32_cifar` | - | 0.2 | 2 | 8.00 ± 0.00 | 1,000 | 2.0 | - | - | - |" in md
    gpu = [r for r in load(results) if r["device"].startswith("cuda")]
    assert len(gpu) == 2 and "error_vs_time.png" not in available_plots(gpu, {})


def test_report_writes_markdown_and_plots(results):
    written = {p.name for p in write_report(results)}
    assert written == {"results.md", "error_vs_params.png", "error_vs_time.png", "ablation_grad_norms.png"}
    assert (results / "ablation_grad_norms.png").read_bytes()[:4] == b"\x89PNG"


def test_the_size_view_draws_each_family_as_a_curve_and_other_models_as_points(results):
    from crunet.study.plots import size_points

    append_row(results / "tier2.csv", {**_row("preresnet_small", 0, 90.0), "params": 500})
    curves, singles = size_points(load(results))
    assert sorted(p[:2] for p in curves["CRU-Net (small)"]) == [(1000, 8.0), (1000, 10.0)]  # the base and size=0.5
    assert set(curves) == {"CRU-Net (small)", "ResNeXt (pre-act, small)", "DSFB ResNet-32 S16U1"}
    assert list(singles) == ["preresnet_small"] and singles["preresnet_small"][:2] == (500, 10.0)


def test_report_without_csvs_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="crunet study run"):
        write_report(tmp_path)


def test_committed_table_is_the_report_of_the_committed_csvs():
    results = REPO / "results"
    if not (results / "results.md").is_file():
        pytest.skip("no committed study results yet")
    assert (results / "results.md").read_text() == render_markdown(results)


def test_pooled_sd_only_from_cells_of_the_data_set_with_a_spread(results):
    table = cells(load(results))
    sd, df = pooled_seed_sd(table, "fashion-mnist")
    assert sd == pytest.approx(0.025**0.5, rel=1e-6) and df == 4  # the one-run cells add nothing
    sd, df = pooled_seed_sd(table, "mnist")
    assert math.isnan(sd) and df == 0  # no mnist runs: no spread to borrow
    assert all(math.isnan(v) for v in pooled_test([1.0], [2.0], math.nan, 0))
