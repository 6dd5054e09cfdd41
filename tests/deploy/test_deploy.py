"""The deploy path: folded models compute what the eval-mode model computes, and sharing survives as documented."""

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import crunet
import crunet.layers.fused as fused
from crunet import count_parameters
from crunet.deploy import DeployedModel, DeployedUnit, choose_layout, deploy
from crunet.layers import ResidualUnit, Stage

SMALL = (1, 28, 28)
FULL = (3, 32, 32)  # the full-size models at their smallest input (their total stride): every unit still runs
FAMILIES = [("crunet_small", SMALL), ("preresnext_small", SMALL), ("preresnet_small", SMALL), ("crunet56", FULL),
            ("preresnext50_32x4d", FULL)]
DSFB = [("resnet32_cifar", (3, 32, 32)), ("dsfb_resnet32_s16u1_double", (3, 32, 32)),
        ("dsfb_resnet50_sharedpp", FULL), ("dsfb_mobilenetv2_shared", FULL)]


def assert_matches(deployed: nn.Module, model: nn.Module, size: tuple[int, int, int]) -> None:
    x = torch.randn(2, *size)
    with torch.no_grad():
        ref, out = model(x), deployed(x)
    err = (out - ref).abs().max().item()
    assert err <= 1e-5 * max(1.0, ref.abs().max().item()), err


CASES = [(name, size, unshare) for name, size in FAMILIES
         for unshare in ((True, False) if "crunet" in name else (True,))]  # unsharing only matters with sharing


@pytest.mark.parametrize("name,size,unshare", CASES)
def test_folded_model_matches_the_eval_model(name, size, unshare, trained_looking):
    model = trained_looking(name, size[0])
    assert_matches(deploy(model, unshare=unshare, layout="contiguous"), model, size)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_both_layouts_match(layout, trained_looking):
    model = trained_looking("crunet_small", SMALL[0])
    deployed = deploy(model, layout=layout)
    assert deployed.layout == layout
    assert_matches(deployed, model, SMALL)


@pytest.mark.parametrize("unshare", [True, False])
@pytest.mark.parametrize("name,size", DSFB)
def test_dsfb_models_fold_their_post_activation_bns(name, size, unshare, trained_looking):
    model = trained_looking(name, size[0])
    deployed = deploy(model, unshare=unshare, layout="contiguous")
    assert_matches(deployed, model, size)
    if not unshare or "dsfb" not in name:  # unshared, the DSFB models get a copy per use (tests/deploy/test_dsfb_*)
        assert count_parameters(deployed) < count_parameters(model)  # every conv -> BN pair lost the BN's scale


def folded_bns(unit: ResidualUnit, unshare: bool) -> list[nn.BatchNorm2d]:
    """The BNs that follow a convolution the unit owns (or, unshared, a shared one it gets a copy of)."""
    last = unit.conv_mix.norm.bn if unit.conv_mix is not None else unit.conv3.norm.bn
    if unit.factors is None:
        return [unit.conv2.norm.bn, last]
    out = [unit.conv3.norm.bn] if unit.conv_mix is not None else []
    if unshare:
        out.append(last)
        if unit.proj is not None:
            out.append(unit.norm1.bn)
    return out


@pytest.mark.parametrize("unshare", [True, False])
@pytest.mark.parametrize("name", ["crunet_small", "preresnext_small"])
def test_parameter_counts(name, unshare):
    """A folded BN trades its weight and bias (2C) for the conv's bias (C); unsharing copies the shared weights."""
    model = crunet.create_model(name, num_classes=10, in_chans=1)
    units = [m for m in model.modules() if isinstance(m, ResidualUnit)]
    expected = count_parameters(model) - model.stem[1].bn.num_features
    expected -= sum(bn.num_features for u in units for bn in folded_bns(u, unshare))
    if unshare:
        expected += sum(u.factors.spatial.numel() for u in units if u.factors is not None)  # one copy per unit...
        expected -= sum(f.spatial.numel() for s in model.stages for f in s.factors)  # ...none left shared
        expected += sum(u.proj.numel() for u in units if u.proj is not None)  # the main path's copy of proj
    deployed = deploy(model, unshare=unshare, layout="contiguous")
    assert count_parameters(deployed) == expected
    if name == "crunet_small":  # the trade, for the record: 365,338 parameters before
        assert (count_parameters(model), count_parameters(deployed)) == (365_338, 408_634 if unshare else 364_458)


def test_shared_factors_stay_shared_unless_unshared(tmp_path):
    model = crunet.create_model("crunet_small", num_classes=10, in_chans=1)
    for unshare in (False, True):
        net = deploy(model, unshare=unshare, layout="contiguous").net
        for stage in net.stages:
            for unit in stage.units:
                assert isinstance(unit, DeployedUnit)
            owners = {id(f) for f in stage.factors}
            convs = [c for u in stage.units for c in u.main if getattr(c, "_owner", None) is not None]
            reduce = [c for c in convs if c.shared_name == "reduce"]
            spatial = [c for c in convs if c.shared_name == "spatial"]
            assert all(id(c._owner) in owners and c.conv_weight() is c._owner.reduce for c in reduce)
            if stage.factors and not unshare:
                assert len(spatial) == len(stage.units)
                assert all(c.conv_weight() is c._owner.spatial for c in spatial)
            assert not spatial if unshare else True
            assert all(f.spatial is None for f in stage.factors) if unshare else True
        save_file(net.state_dict(), str(tmp_path / f"deployed_{unshare}.safetensors"))  # each tensor once


def test_the_original_model_is_untouched_and_the_copy_is_inference_only(trained_looking):
    model = trained_looking("crunet_small", SMALL[0]).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    deployed = deploy(model, layout="contiguous")
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(deployed, DeployedModel) and not deployed.training
    assert not any(p.requires_grad for p in deployed.parameters())
    with pytest.raises(RuntimeError, match="inference-only"):
        deployed.train()
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        feats = deployed.forward_features(x)
        assert torch.allclose(deployed.forward_head(feats), deployed(x))


def test_eager_fallback_without_onednn_matches(monkeypatch, trained_looking):
    model = trained_looking("crunet_small", SMALL[0])
    monkeypatch.setattr(fused, "_POINTWISE", None)
    assert_matches(deploy(model, layout="channels_last"), model, SMALL)


def test_bf16_autocast_runs_close_to_float32(trained_looking):
    model = trained_looking("preresnext_small", SMALL[0])
    deployed = deploy(model, layout="contiguous")
    x = torch.randn(2, *SMALL)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = deployed(x).float()
    with torch.no_grad():
        ref = model(x)
    assert (out - ref).abs().max() < 0.1 * ref.abs().max()


def test_auto_layout_times_both_and_picks_the_fastest():
    model = crunet.create_model("preresnet_small", num_classes=10, in_chans=1)
    deployed = deploy(model, input_size=(1, 8, 8), batch_size=1, repeats=1)
    times = deployed.layout_times
    assert set(times) == {"contiguous", "channels_last"} and deployed.layout == min(times, key=times.get)
    layout, _ = choose_layout(deployed.net, (1, 8, 8), batch_size=1, repeats=1)
    assert layout in times


def test_bad_layout_is_refused():
    with pytest.raises(ValueError, match="layout"):
        deploy(crunet.create_model("preresnet_small", num_classes=10, in_chans=1), layout="nhwc")


def test_stage_units_are_replaced_everywhere():
    net = deploy(crunet.create_model("crunet_small", num_classes=10, in_chans=1), layout="contiguous").net
    assert not any(isinstance(m, ResidualUnit) for m in net.modules())
    assert all(isinstance(u, DeployedUnit) for s in net.modules() if isinstance(s, Stage) for u in s.units)
