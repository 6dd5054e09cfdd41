"""factors(unit): the GBTD configuration of every unit kind, and CRU sharing of the very same A3 and G."""

import pytest
import torch

from crunet.gbtd import factors, is_unit
from crunet.layers import BnAct, ResidualUnit, SharedFactors, Stage
from tests.gbtd.units import make_unit


@pytest.mark.parametrize(("kind", "groups", "rank"), [
    ("resnet", 1, 4), ("wide", 1, 12), ("resnext", 4, 2), ("nx1d", 8, 1),
])
def test_unshared_units_have_R_terms_of_rank_width_over_R(kind, groups, rank):
    unit, _ = make_unit(8, 8, groups, rank, 1, shared=False)
    g = factors(unit)
    assert g.num_terms == groups
    assert g.ranks == (rank, rank)
    assert g.dims == (8, 8)
    assert g.shared is None and g.input_map is None
    assert g.core.shape == (groups, 3, 3, rank, rank)
    assert g.factor_params() == 8 * groups * rank + 9 * groups * rank * rank + 8 * groups * rank
    assert g.dense_params() == 9 * 8 * 8


def test_unshared_factors_are_the_conv_weights_with_the_bn_scales_absorbed():
    unit, _ = make_unit(6, 6, 2, 2, 1, shared=False)
    g = factors(unit)
    bn1, bn2 = unit.conv1.norm.bn, unit.conv2.norm.bn
    s1 = bn1.weight / torch.sqrt(bn1.running_var + bn1.eps)
    s2 = bn2.weight / torch.sqrt(bn2.running_var + bn2.eps)
    w1 = unit.conv1.conv.weight[:, :, 0, 0]
    expected_a3 = (s2[:, None] * w1 * s1[None, :]).view(2, 2, 6).transpose(1, 2)
    torch.testing.assert_close(g.a3, expected_a3)
    torch.testing.assert_close(g.core[1, :, :, 0, 1], unit.conv2.conv.weight[3, 0].detach())
    kept = factors(unit, keep_input_norm=True)
    torch.testing.assert_close(kept.input_map.weight, torch.diag(s1).detach())


def test_cru_units_of_a_group_share_the_same_a3_and_core_tensors():
    stage = Stage(4, 8, depth=5, width=8, groups=8, stride=2, share_every=3).double().eval()
    units = list(stage.units)
    gs = [factors(u) for u in units]
    assert all(g.shared is stage.factors[0] for g in gs[:3]) and all(g.shared is stage.factors[1] for g in gs[3:])
    for g in gs[:3]:  # views of the group's parameters: the same memory, not copies
        assert g.a3.data_ptr() == stage.factors[0].reduce.data_ptr()
        assert g.core.data_ptr() == stage.factors[0].spatial.data_ptr()
    assert gs[3].a3.data_ptr() != gs[0].a3.data_ptr()
    assert all(torch.equal(gs[0].a3, g.a3) and torch.equal(gs[0].core, g.core) for g in gs[1:3])
    assert not torch.equal(gs[0].a4, gs[1].a4)  # A4 is each unit's own
    before = gs[1].a3.clone()
    with torch.no_grad():
        stage.factors[0].reduce.mul_(2)  # an update of the shared tensor is seen by every unit's factors
    assert torch.equal(gs[1].a3, 2 * before) and torch.equal(gs[2].a3, 2 * before)

def test_cru_extra_1x1_folds_into_a4():
    unit, _ = make_unit(6, 6, 3, 2, 1, shared=True, extra_1x1=True)
    g = factors(unit)
    assert g.a4.shape == (3, 6, 2)  # (R, d4, d4*): the extra 1x1 leaves the shape unchanged
    mix = unit.conv_mix.conv.weight[:, :, 0, 0]
    bn_mix, bn3 = unit.conv_mix.norm.bn, unit.conv3.norm.bn
    s_mix = bn_mix.weight / torch.sqrt(bn_mix.running_var + bn_mix.eps)
    s3 = bn3.weight / torch.sqrt(bn3.running_var + bn3.eps)
    expected = unit.conv3.conv.weight[:, :, 0, 0] @ torch.diag(s3) @ mix @ torch.diag(s_mix)
    torch.testing.assert_close(g.a4.permute(1, 0, 2).reshape(6, 6), expected.detach())


def test_first_cru_unit_keeps_its_projection_in_the_input_map():
    unit, _ = make_unit(3, 6, 3, 2, 2, shared=True)
    g = factors(unit)
    assert g.in_chs == 3 and g.dims == (6, 6) and g.stride == 2
    assert g.input_map.weight.shape == (6, 3)


def test_is_unit_and_type_errors():
    unit, _ = make_unit(4, 4, 2, 2, 1, shared=False)
    assert is_unit(unit)
    assert not any(is_unit(m) for m in (Stage(4, 4, 1, 4, 2), BnAct(4), SharedFactors(4, 4, 2), object()))
    assert isinstance(unit, ResidualUnit)
    with pytest.raises(TypeError, match="residual unit"):
        factors(BnAct(4))
