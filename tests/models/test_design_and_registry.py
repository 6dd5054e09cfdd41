"""Design spaces, the registry and the bad-input errors they give."""

import subprocess
import sys

import pytest
import torch

import crunet
from crunet.models.design import NetCfg, StageCfg, bottleneck_stages
from crunet.models.width_solver import params_of, solve_width


def test_unknown_model_lists_the_closest_names():
    with pytest.raises(ValueError, match="unknown model 'crunet5'.*closest: crunet56"):
        crunet.create_model("crunet5")


def test_list_models_filters_by_pattern():
    assert crunet.list_models("crunet*") == ["crunet116", "crunet116_wide", "crunet56", "crunet56_136x1d",
                                             "crunet_small", "crunet_small_plain_last"]
    for name in ["preresnet50", "preresnet101", "preresnext50_32x4d", "preresnext50_2x40d", "preresnext50_136x1d",
                 "preresnext50_nx1d", "prewrn50_2", "preresnet_small", "preresnext_small"]:
        assert name in crunet.list_models()


@pytest.mark.parametrize("kwargs, message", [
    ({"width": 100, "groups": 32}, "StageCfg.width=100 is not divisible by StageCfg.groups=32"),
    ({"share_every": 7}, "StageCfg.share_every=7 is larger than the stage"),
    ({"depth": 0}, "StageCfg.depth must be a positive integer, got 0"),
    ({"out_chs": -4}, "StageCfg.out_chs must be a positive integer, got -4"),
    ({"groups": 0}, "StageCfg.groups must be a positive integer, got 0"),
])
def test_invalid_stage_names_the_field_and_value(kwargs, message):
    base = {"depth": 6, "out_chs": 64, "width": 32, "groups": 4}
    with pytest.raises(ValueError, match=message):
        StageCfg(**{**base, **kwargs})


def test_overrides_change_the_design_and_unknown_ones_are_named():
    model = crunet.create_model("crunet_small", num_classes=10, in_chans=1, bn_eps=1e-3, stem_chs=16)
    assert model.stem[0].out_channels == 16 and model.stem[1].bn.eps == 1e-3
    with pytest.raises(TypeError, match="unknown option.*widht.*valid options: stages"):
        crunet.create_model("crunet_small", widht=3)
    with pytest.raises(ValueError, match="NetCfg.stem must be one of"):
        crunet.create_model("crunet_small", stem="tiny")


def test_a_stage_can_be_overridden_with_a_new_design():
    stages = bottleneck_stages((1, 1), (8, 16), (None, 4), out_chs=(16, 32), share_every=(1, 0))
    model = crunet.create_model("preresnet_small", num_classes=3, in_chans=1, stages=stages)
    assert model(torch.randn(1, 1, 16, 16)).shape == (1, 3) and len(model.feature_info) == 2


@pytest.mark.parametrize("name, option", [("crunet_small", "size=2"), ("dsfb_resnet32_s16u1", "size=0.5")])
def test_overrides_read_back_from_a_saved_config_rebuild_the_same_model(name, option):
    import json
    from dataclasses import asdict, is_dataclass

    from crunet.study.grid import parse_option, size_overrides

    overrides = size_overrides(name, float(parse_option(option)["size"]))
    saved = json.loads(json.dumps({k: [asdict(v) if is_dataclass(v) else v for v in value] if isinstance(value, tuple)
                                   else value for k, value in overrides.items()}))  # what a checkpoint gives back
    assert saved != overrides  # lists and dicts, not tuples of StageCfg
    built, rebuilt = (crunet.create_model(name, num_classes=10, in_chans=1, **kw) for kw in (overrides, saved))
    assert rebuilt.cfg == built.cfg
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in built.parameters())


def test_cru_net_uses_the_released_conventions():
    model = crunet.create_model("crunet_small")
    big_cfg = crunet.models.crunet.CRUNET56
    assert big_cfg.bn_eps == 1e-3
    with torch.device("meta"):
        big = crunet.create_model("crunet56")
    assert big.pretrained_cfg["mean"] == pytest.approx((124 / 255, 117 / 255, 104 / 255))
    assert 1 / (big.pretrained_cfg["std"][0] * 255) == pytest.approx(0.0167)
    assert model.pretrained_cfg["input_size"] == (3, 28, 28)


def test_width_solver_finds_the_nearest_width():
    def design(width):
        return NetCfg((StageCfg(2, 32, width, None, 1, 2),), stem="small", stem_chs=8)

    target = params_of(design(40), 10, 1) + 3
    assert solve_width(design, target, num_classes=10, in_chans=1) == 40
    assert solve_width(design, target, multiple=8, num_classes=10, in_chans=1) == 40
    with pytest.raises(ValueError, match="no width up to 64 reaches"):
        solve_width(design, 10**9, max_width=64, num_classes=10, in_chans=1)


@pytest.mark.slow
def test_the_package_imports_without_torchvision_or_timm():
    code = ("import sys; sys.modules['torchvision'] = None; sys.modules['timm'] = None; import crunet; "
            "print(crunet.create_model('crunet_small').name)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "crunet_small"
