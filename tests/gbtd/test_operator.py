"""The linearized unit is one convolution away from the border, and its GBTD is the unit everywhere."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from crunet.gbtd import factors, linearized, operator
from crunet.gbtd.operator import shortcut_map
from tests.gbtd.units import make_unit
from tests.helpers import random_images


@st.composite
def unit_configs(draw):
    shared = draw(st.booleans())
    groups = draw(st.sampled_from([1, 2, 3, 4]))
    rank = draw(st.sampled_from([1, 2, 3]))
    out_chs = draw(st.sampled_from([4, 6, 8]))
    stride = draw(st.sampled_from([1, 2]))
    in_chs = draw(st.sampled_from([out_chs, 3, 5])) if stride == 1 else draw(st.sampled_from([out_chs, 3, 5]))
    extra_1x1 = draw(st.booleans())
    size = draw(st.sampled_from([5, 6, 7, 8]))
    seed = draw(st.integers(0, 2**16))
    return dict(in_chs=in_chs, out_chs=out_chs, groups=groups, rank=rank, stride=stride, shared=shared,
                extra_1x1=extra_1x1, seed=seed), size


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


@settings(max_examples=60, deadline=None)
@given(unit_configs())
def test_linearized_unit_is_one_convolution_away_from_the_border(config):
    cfg, size = config
    unit, _ = make_unit(**cfg)
    x = random_images(2, cfg["in_chs"], size, seed=cfg["seed"] + 1, dtype=torch.float64)
    weight, bias = operator(unit, shortcut=True)
    k = weight.shape[-1]
    with linearized(unit), torch.no_grad():
        expected = unit(x)
    got = F.conv2d(x, weight, bias, stride=cfg["stride"], padding=k // 2)
    assert got.shape == expected.shape
    assert _rel(got[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1]) < 1e-9


@settings(max_examples=60, deadline=None)
@given(unit_configs())
def test_residual_operator_is_the_unit_minus_its_shortcut(config):
    cfg, size = config
    unit, _ = make_unit(**cfg)
    x = random_images(2, cfg["in_chs"], size, seed=cfg["seed"] + 1, dtype=torch.float64)
    weight, bias = operator(unit)
    matrix, short_bias = shortcut_map(unit)
    with linearized(unit), torch.no_grad():
        residual = unit(x) - F.conv2d(x, matrix[:, :, None, None], short_bias, stride=cfg["stride"])
    got = F.conv2d(x, weight, bias, stride=cfg["stride"], padding=weight.shape[-1] // 2)
    assert _rel(got[..., 1:-1, 1:-1], residual[..., 1:-1, 1:-1]) < 1e-9


@settings(max_examples=60, deadline=None)
@given(unit_configs())
def test_factored_form_is_the_linearized_residual_function_border_included(config):
    cfg, size = config
    unit, _ = make_unit(**cfg)
    x = random_images(2, cfg["in_chs"], size, seed=cfg["seed"] + 1, dtype=torch.float64)
    matrix, short_bias = shortcut_map(unit)
    with linearized(unit), torch.no_grad():
        residual = unit(x) - F.conv2d(x, matrix[:, :, None, None], short_bias, stride=cfg["stride"])
    assert _rel(factors(unit).residual(x), residual) < 1e-9


@pytest.mark.parametrize("shared", [False, True])
def test_the_border_differs_because_the_padded_intermediate_carries_a_bias(shared):
    unit, _ = make_unit(6, 6, 2, 2, 1, shared, seed=3)
    x = torch.randn(1, 6, 6, 6, dtype=torch.float64)
    weight, bias = operator(unit, shortcut=True)
    with linearized(unit), torch.no_grad():
        expected = unit(x)
    got = F.conv2d(x, weight, bias, padding=1)
    assert _rel(got[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1]) < 1e-9
    assert _rel(got[..., 0, :], expected[..., 0, :]) > 1e-3  # the border is where they part

    g = factors(unit)  # and exactly by the bias that the zero-padded T1 lacks: no bias, no difference
    with torch.no_grad():
        g.bias3.zero_()
        if g.input_map is not None:
            g.input_map.bias.zero_()
    no_bias, b = g.kernel()
    short, _ = shortcut_map(unit)
    no_bias[:, :, 1, 1] += short
    assert _rel(F.conv2d(x, no_bias, b, padding=1), g.residual(x) + F.conv2d(x, short[:, :, None, None])) < 1e-9


def test_linearized_restores_the_activations_and_nests():
    unit, _ = make_unit(4, 4, 2, 2, 1, False)
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        before = unit(x)
        with linearized(unit):
            linear = unit(x)
            with linearized(unit):
                assert torch.equal(unit(x), linear)
            assert torch.equal(unit(x), linear)
        after = unit(x)
    assert torch.equal(before, after)
    assert not torch.allclose(before, linear)
