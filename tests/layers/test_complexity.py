import pytest
from torch import nn

import crunet
from crunet.layers.complexity import Cx, conv_cx, measured_macs, module_cx


def test_conv_count_matches_the_formula():
    cx = conv_cx(Cx(c=8, h=10, w=10), out_chs=16, kernel=3, stride=2, groups=4)
    assert (cx.c, cx.h, cx.w) == (16, 5, 5)
    assert cx.params == 16 * 2 * 9 and cx.macs == 16 * 2 * 9 * 25 and cx.acts == 16 * 25


def test_standard_modules_are_counted_and_unknown_ones_refused():
    seq = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 2))
    cx = module_cx(seq, Cx(3, 8, 8))
    assert cx.params == sum(p.numel() for p in seq.parameters())
    assert cx.macs == measured_macs(seq, (3, 8, 8))
    with pytest.raises(TypeError, match="no analytic count for GELU"):
        module_cx(nn.GELU(), Cx(3, 8, 8))


def test_a_shared_weight_counts_its_parameters_once_and_its_macs_per_use():
    """parameters() yields each shared tensor once and FlopCounterMode sees every use: the analytic count must agree
    with both (a shared tensor counted per use, or a use not counted, breaks one of them)."""
    model = crunet.create_model("crunet_small", num_classes=10, in_chans=1)
    assert any(len(stage.factors) for stage in model.stages)  # the model does share
    cx = crunet.complexity(model, (1, 28, 28))
    assert cx["params"] == crunet.count_parameters(model)
    assert cx["macs"] == measured_macs(model, (1, 28, 28))


def test_complexity_rejects_a_mismatched_input():
    model = crunet.create_model("crunet_small", num_classes=10, in_chans=1)
    with pytest.raises(ValueError, match="expects in_chans=1"):
        crunet.complexity(model, (3, 28, 28))
    with pytest.raises(ValueError, match="input_size must be"):
        crunet.complexity(model, (28, 28))
