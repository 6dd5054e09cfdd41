import pytest

from crunet.models import create_model
from crunet.study.grid import GRIDS, Recipe, RunSpec, grid, parse_option, size_overrides


def _params(model: str, **kwargs) -> int:
    return sum(p.numel() for p in create_model(model, num_classes=10, in_chans=1, **kwargs).parameters())


def test_option_changes_recipe_and_model():
    spec = RunSpec("fashion-mnist", "dsfb_resnet32_s16u1", 2, "lr=0.1,orth_lambda=0,amp=bf16,holdout=500")
    cfg = spec.train_config(Recipe(data="somewhere", epochs=3, settings={"subset": 64}), "out")
    assert (cfg.lr, cfg.amp, cfg.holdout, cfg.seed, cfg.epochs, cfg.subset) == (0.1, "bf16", 500, 2, 3, 64)
    assert cfg.model_kwargs == {"orth_unique": False, "orth_lambda": 0.0} and cfg.log_shared_grads
    assert spec.key == "fashion-mnist/dsfb_resnet32_s16u1/lr=0.1,orth_lambda=0,amp=bf16,holdout=500/seed2"


def test_tier3_options_set_length_shifts_and_the_regularizer_form():
    recipe = Recipe(data=None, epochs=5)
    cfg = RunSpec("fashion-mnist", "dsfb_resnet32_s16u1", 0, "epochs=20,pad=2,amp=bf16,orth_unique=1").train_config(
        recipe, "out")
    assert (cfg.epochs, cfg.pad, cfg.amp, cfg.model_kwargs) == (20, 2, "bf16", {"orth_unique": True})
    shared_only = RunSpec("fashion-mnist", "dsfb_resnet32_s16u1", 0, "epochs=20").train_config(recipe, "out")
    assert shared_only.model_kwargs == {"orth_unique": False}  # tiers 1-2's form, whatever the model's default
    assert RunSpec("fashion-mnist", "crunet_small", 0, "").train_config(recipe, "out").model_kwargs == {}
    with pytest.raises(ValueError, match="orth_unique=0 or orth_unique=1"):
        RunSpec("fashion-mnist", "dsfb_resnet32_s16u1", 0, "orth_unique=yes").train_config(recipe, "out")


def test_tier3_has_its_cells_at_their_seed_counts(checked_rates):
    from collections import Counter

    from crunet.study.grid import CONVERGENCE_CHECK_MODEL, TIER3_EPOCHS, tier3

    runs = tier3(checked_rates)
    e = f"epochs={TIER3_EPOCHS},pad=2,amp=bf16"
    assert Counter((r.model, r.option) for r in runs) == {
        ("preresnext_small", e): 5, ("crunet_small", f"lr=0.4,{e}"): 5, ("crunet_small_plain_last", f"lr=0.4,{e}"): 5,
        ("preresnet_small", e): 2, ("resnet32_cifar", e): 3, ("dsfb_resnet32_s16u1", f"{e},orth_unique=1"): 3,
        ("dsfb_resnet32_s16u1", e): 3, ("dsfb_resnet32_s16u1", f"{e},orth_lambda=0"): 3,
        (CONVERGENCE_CHECK_MODEL, f"epochs={2 * TIER3_EPOCHS},pad=2,amp=bf16"): 1,
        ("dsfb_resnet32_s16u1", f"epochs={2 * TIER3_EPOCHS},pad=2,amp=bf16,orth_unique=1"): 1,
        ("resnet32_cifar", f"epochs={2 * TIER3_EPOCHS},pad=2,amp=bf16"): 1,
        ("preresnext_small", f"epochs={2 * TIER3_EPOCHS},pad=2,amp=bf16"): 3,
        ("crunet_small", f"lr=0.4,epochs={2 * TIER3_EPOCHS},pad=2,amp=bf16"): 3,
        ("crunet_small_plain_last", f"lr=0.4,epochs={2 * TIER3_EPOCHS},pad=2,amp=bf16"): 3}
    assert TIER3_EPOCHS >= 20 and runs[0].option.startswith(f"epochs={2 * TIER3_EPOCHS}")  # the longest run first
    assert [r.model for r in runs[:3]] == [CONVERGENCE_CHECK_MODEL] * 3  # the E-versus-2E check before the rest
    assert [r.seed for r in runs[3:-17]] == sorted(r.seed for r in runs[3:-17])
    # added after the rest had run: the DSFB pair at 2E (DSFB, the longer one, first), then the CRU claim's seeds 3-4,
    # then the CRU claim at 2E, seeds 0-2
    claim = ("preresnext_small", "crunet_small", "crunet_small_plain_last")
    assert [(r.model, r.seed) for r in runs[-17:-15]] == [("dsfb_resnet32_s16u1", 0), ("resnet32_cifar", 0)]
    assert all(r.option.startswith(f"epochs={2 * TIER3_EPOCHS}") for r in runs[-17:-15])
    assert [(r.model, r.seed) for r in runs[-15:-9]] == [(model, seed) for seed in (3, 4) for model in claim]
    assert [(r.model, r.seed) for r in runs[-9:]] == [(model, seed) for seed in range(3) for model in claim]
    assert all(r.option.endswith(f"epochs={2 * TIER3_EPOCHS},pad=2,amp=bf16") for r in runs[-9:])


@pytest.mark.parametrize("option", ["lr", "width=2", "lr=", "=3"])
def test_malformed_option_is_refused(option):
    with pytest.raises(ValueError, match="study option"):
        parse_option(option)


@pytest.mark.parametrize("model", ["preresnext_small", "crunet_small", "resnet32_cifar", "dsfb_resnet32_s16u1"])
@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_size_option_scales_parameters(model, factor):
    ratio = _params(model, **size_overrides(model, factor)) / _params(model)
    assert factor * 0.8 < ratio < factor * 1.25


def test_grids_have_unique_keys_and_build(checked_rates):
    for name in GRIDS:
        specs = grid(name, checked_rates)
        assert len({s.key for s in specs}) == len(specs)
        for spec in specs:
            spec.train_config(Recipe(None, 1), "out").check()
    with pytest.raises(ValueError, match="unknown grid"):
        grid("tier9")


def test_learning_rate_search_grows_past_a_winning_edge(tmp_path):
    from crunet.study.grid import LR_CHECK_MODELS, lr_check, lr_option
    from crunet.study.results_csv import append_row

    def record(model, lr, top1):
        append_row(tmp_path / "lr-check.csv", {"key": f"{model}/{lr}", "model": model, "option": lr_option(lr),
                                               "test_top1": top1})

    assert len(lr_check(tmp_path)) == 3 * len(LR_CHECK_MODELS)
    for lr, top1 in (("0.1", 91.0), ("0.2", 90.0), ("0.4", 89.0)):
        record("crunet_small", lr, top1)  # the smallest rate wins: try half of it
    for lr, top1 in (("0.1", 90.0), ("0.2", 91.0)):
        record("resnet32_cifar", lr, top1)  # unfinished: nothing added yet
    added = lr_check(tmp_path)[3 * len(LR_CHECK_MODELS):]
    assert [(s.model, s.option) for s in added] == [("crunet_small", lr_option("0.05"))]
    record("resnet32_cifar", "0.4", 95.0)  # the largest wins: try double
    assert lr_check(tmp_path)[-1].option == lr_option("0.8")


def test_each_family_runs_at_its_clearly_best_rate(checked_rates):
    from crunet.study.grid import family_rates, tier1, tier2

    assert family_rates(checked_rates) == {"crunet_small": "0.4", "preresnext_small": "0.2",
                                           "resnet32_cifar": "0.2", "dsfb_resnet32_s16u1": "0.2",
                                           "preresnet_small": "0.2"}
    options = {(s.dataset, s.model, s.option) for s in tier1(checked_rates)}
    assert ("fashion-mnist", "crunet_small", "lr=0.4") in options and ("mnist", "crunet_small", "lr=0.4") in options
    assert ("fashion-mnist", "preresnext_small", "") in options
    assert ("fashion-mnist", "dsfb_resnet32_s16u1", "orth_lambda=0") in options
    rest = {(s.model, s.option) for s in tier2(checked_rates)}
    assert ("crunet_small", "lr=0.4,size=2") in rest and ("crunet_small", "amp=bf16") in rest  # bf16: default run
    assert [s.seed for s in tier1(checked_rates)] == sorted(s.seed for s in tier1(checked_rates))  # seed-major


def test_claims_wait_for_a_finished_check(tmp_path, record_lr):
    from crunet.study.grid import family_rates, tier1

    with pytest.raises(ValueError, match="not finished for .*preresnet_small.*crunet study run lr-check"):
        tier1(tmp_path)
    for lr, top1 in (("0.1", 91.0), ("0.2", 92.0), ("0.4", 92.5)):
        record_lr(tmp_path, "crunet_small", lr, top1)
    assert "crunet_small" not in family_rates(tmp_path)  # 0.4 won at the edge: 0.8 is still to run
    record_lr(tmp_path, "crunet_small", "0.8", 90.0)
    assert family_rates(tmp_path)["crunet_small"] == "0.4"


def test_sized_cells_keep_the_parameter_counts_of_their_committed_rows():
    """The designs scale their own widths (``width_overrides``): each committed size= row is rebuilt exactly."""
    from pathlib import Path

    from crunet.study.results_csv import read_rows

    rows = [r for name in ("tier1.csv", "tier2.csv", "tier3.csv")
            for r in read_rows(Path(__file__).resolve().parents[2] / "results" / name)
            if "size" in parse_option(r["option"])]
    if not rows:
        pytest.skip("no committed sized runs")
    for row in rows:
        overrides = size_overrides(row["model"], float(parse_option(row["option"])["size"]))
        assert _params(row["model"], **overrides) == int(row["params"]), row["key"]
        cfg = create_model(row["model"], num_classes=10, in_chans=1).cfg
        assert create_model(row["model"], num_classes=10, in_chans=1, **overrides).cfg == cfg.scaled(
            float(parse_option(row["option"])["size"]) ** 0.5)
