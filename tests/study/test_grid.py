import pytest

from crunet.models import create_model
from crunet.study.grid import GRIDS, Recipe, RunSpec, grid, parse_option, size_overrides


def _params(model: str, **kwargs) -> int:
    return sum(p.numel() for p in create_model(model, num_classes=10, in_chans=1, **kwargs).parameters())


def test_option_changes_recipe_and_model():
    spec = RunSpec("fashion-mnist", "dsfb_resnet32_s16u1", 2, "lr=0.1,orth_lambda=0,amp=bf16,holdout=500")
    cfg = spec.train_config(Recipe(data="somewhere", epochs=3, settings={"subset": 64}), "out")
    assert (cfg.lr, cfg.amp, cfg.holdout, cfg.seed, cfg.epochs, cfg.subset) == (0.1, "bf16", 500, 2, 3, 64)
    assert cfg.model_kwargs == {"orth_lambda": 0.0} and cfg.log_shared_grads
    assert spec.key == "fashion-mnist/dsfb_resnet32_s16u1/lr=0.1,orth_lambda=0,amp=bf16,holdout=500/seed2"


@pytest.mark.parametrize("option", ["lr", "width=2", "lr=", "=3"])
def test_malformed_option_is_refused(option):
    with pytest.raises(ValueError, match="study option"):
        parse_option(option)


@pytest.mark.parametrize("model", ["preresnext_small", "crunet_small", "resnet32_cifar", "dsfb_resnet32_s16u1"])
@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_size_option_scales_parameters(model, factor):
    ratio = _params(model, **size_overrides(model, factor)) / _params(model)
    assert factor * 0.8 < ratio < factor * 1.25


def test_grids_have_unique_keys_and_build():
    for name in GRIDS:
        specs = grid(name)
        assert len({s.key for s in specs}) == len(specs)
        for spec in specs:
            spec.train_config(Recipe(None, 1), "out").check()
    with pytest.raises(ValueError, match="unknown grid"):
        grid("tier3")
