"""The rules parameter sharing imposes: one owner per shared tensor, gradients summed over its users."""

import copy

import pytest
import torch

import crunet
from crunet.layers import ResidualUnit, SharedFactors, Stage


def _groups(model):
    return [m for m in model.modules() if isinstance(m, SharedFactors)]


@pytest.mark.parametrize("name, expected_groups", [("crunet56", 1), ("crunet116", 1 + 3), ("preresnext50_32x4d", 0)])
def test_sharing_groups_follow_the_paper(name, expected_groups):
    with torch.device("meta"):
        model = crunet.create_model(name)
    assert len(_groups(model)) == expected_groups
    for stage in model.stages:
        for i, unit in enumerate(stage.units):
            group = stage.factors[i // 6] if len(stage.factors) else None
            assert unit.factors is group


def test_a_shared_tensor_is_one_parameter_and_one_state_dict_entry():
    with torch.device("meta"):
        model = crunet.create_model("crunet116")
    shared = {id(p) for g in _groups(model) for p in g.parameters()}
    assert len(shared) == 2 * 4
    names = [n for n, p in model.named_parameters() if id(p) in shared]
    assert len(names) == len(shared)
    keys = [k for k in model.state_dict() if k.endswith(("reduce", "spatial"))]
    assert sorted(keys) == sorted(names)


def _unshare(model):
    """A copy in which every unit gets its own clone of its group's factors."""
    clone = copy.deepcopy(model)
    clones = []
    for module in clone.modules():
        if isinstance(module, ResidualUnit) and module.factors is not None:
            own = copy.deepcopy(module.factors)
            module.__dict__["_factors"] = own
            clones.append((module.factors, own))
    return clone, clones


def test_a_shared_weight_receives_the_sum_of_its_users_gradients():
    model = crunet.create_model("crunet_small", num_classes=10, in_chans=1).double()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    model(x).sum().backward()
    unshared, _ = _unshare(model)
    unshared.zero_grad(set_to_none=True)
    owners = {id(u.factors): u for u in unshared.modules() if isinstance(u, ResidualUnit) and u.factors is not None}
    assert len(owners) == 6  # every unit now has its own copy
    unshared(x).sum().backward()
    for stage, stage_copy in zip(model.stages, unshared.stages, strict=True):
        for g, group in enumerate(stage.factors):
            users = [u.factors for u in stage_copy.units[g * 3:(g + 1) * 3]]
            for attr in ("reduce", "spatial"):
                summed = sum(getattr(f, attr).grad for f in users)
                torch.testing.assert_close(getattr(group, attr).grad, summed, rtol=1e-10, atol=1e-12)


def test_deepcopy_and_to_keep_units_pointing_at_their_owner():
    model = copy.deepcopy(crunet.create_model("crunet_small", num_classes=10, in_chans=1)).to(torch.float64)
    stage = model.stages[2]
    assert all(u.factors is stage.factors[0] for u in stage.units)
    assert stage.factors[0].reduce.dtype == torch.float64


def test_stage_groups_units_in_consecutive_runs():
    stage = Stage(16, 32, depth=5, width=8, groups=8, stride=2, share_every=2)
    assert len(stage.factors) == 3
    assert [list(stage.factors).index(u.factors) for u in stage.units] == [0, 0, 1, 1, 2]
    assert stage.units[0].proj is not None and stage.units[1].proj is None


def test_zero_init_last_makes_every_unit_start_as_its_shortcut():
    plain = crunet.create_model("crunet_small", num_classes=10, in_chans=1).eval()
    x = torch.randn(2, 128, 4, 4)
    assert not torch.equal(plain.stages[1].units[1](x), x)
    model = crunet.create_model("crunet_small", num_classes=10, in_chans=1, zero_init_last=True).eval()
    for stage in model.stages:
        unit = stage.units[1]
        x = torch.randn(2, unit.in_chs, 4, 4)
        assert torch.equal(unit(x), x)


def test_shared_factors_reject_incompatible_units():
    factors = SharedFactors(32, 16, 16)
    with pytest.raises(ValueError, match="shared factors map 32 -> 16"):
        ResidualUnit(32, 64, 16, factors=factors)
    with pytest.raises(ValueError, match="width=10 is not divisible by groups=4"):
        SharedFactors(8, 10, 4)
    unit = ResidualUnit(32, 32, 16, factors=factors)  # a unit that fits uses the factors without owning them
    assert unit.factors is factors and not any(p is factors.reduce for p in unit.parameters())
