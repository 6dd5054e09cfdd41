"""The numbers the paper and the released code fix, asserted exactly (1000 classes, 224x224)."""

import pytest

import crunet
from crunet.layers.complexity import measured_macs
from crunet.models.crunet import CRUNET56_PARAMS, crunet56_136x1d_width
from crunet.models.small import crunet_small_plain_last_width, crunet_small_width
from tests.helpers import meta_model


@pytest.mark.parametrize("name, params, gmacs", [
    ("crunet56", 25_609_384, 5.63),
    ("crunet116", 43_656_136, 12.65),
    ("preresnext50_32x4d", 25_025_064, 4.23),
    ("preresnet50", 25_553_192, 4.09),
])
def test_published_params_exact_and_macs_within_one_percent(name, params, gmacs):
    model = meta_model(name)
    assert crunet.count_parameters(model) == params
    cx = crunet.complexity(model, (3, 224, 224))
    assert cx["params"] == params
    assert cx["macs"] == pytest.approx(gmacs * 1e9, rel=0.01)


def test_crunet116_wide_matches_the_reconstructed_size():
    # ~82.98 M, from the paper's sizes; its 318 MB is the checkpoint size (parameters + BN statistics), rounded up.
    assert crunet.count_parameters(meta_model("crunet116_wide")) == pytest.approx(82.98e6, rel=1e-3)


def test_crunet56_136x1d_width_is_solved_to_crunet56_size():
    width = crunet56_136x1d_width()
    model = meta_model("crunet56_136x1d")
    assert model.stages[2].units[0].width == width
    assert crunet.count_parameters(model) == pytest.approx(CRUNET56_PARAMS, rel=1e-3)
    for other in (width - 1, width + 1):  # the solved width is the nearest
        from crunet.models.crunet import crunet56_136x1d_design
        from crunet.models.width_solver import params_of
        assert abs(params_of(crunet56_136x1d_design(other)) - CRUNET56_PARAMS) >= abs(
            crunet.count_parameters(model) - CRUNET56_PARAMS)


def test_small_pair_is_parameter_matched_within_three_percent():
    cru = crunet.count_parameters(crunet.create_model("crunet_small", num_classes=10, in_chans=1))
    rx = crunet.count_parameters(crunet.create_model("preresnext_small", num_classes=10, in_chans=1))
    assert abs(cru - rx) / rx < 0.03
    assert 0.2e6 <= rx <= 1.5e6 and crunet_small_width() % 4 == 0


def test_released_pattern_small_cru_shares_only_the_middle_stage_at_preresnext_small_size():
    model = crunet.create_model("crunet_small_plain_last", num_classes=10, in_chans=1)
    rx = crunet.count_parameters(crunet.create_model("preresnext_small", num_classes=10, in_chans=1))
    assert abs(crunet.count_parameters(model) - rx) / rx < 0.03
    assert [len(stage.factors) for stage in model.stages] == [0, 1, 0]  # one sharing group: the middle stage
    assert model.stages[1].units[0].width == crunet_small_plain_last_width()
    assert [unit.groups for unit in model.stages[2].units] == [8, 8, 8]  # the last stage: plain ResNeXt, 8 groups


@pytest.mark.parametrize("name", ["crunet56", "preresnext50_32x4d"])
def test_analytic_macs_match_flop_counter_at_224(name):
    model = crunet.create_model(name)
    assert crunet.complexity(model)["macs"] == measured_macs(model, (3, 224, 224))
