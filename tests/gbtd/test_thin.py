"""Thinning a trained ResNet by filter norm (crunet.gbtd.thin): the same widths copy the network, and a network whose
dropped channels are dead (zero BN scale and shift) keeps its function exactly, zero-padding shortcuts included."""

import pytest
import torch

import crunet
from crunet.errors import ConfigError
from crunet.gbtd.thin import thin_from_resnet

THIN = {"widths": (10, 21, 42)}  # resnet32_cifar at DSFB S16U1's parameters


def _kill(bn, channels):
    bn.weight.data[channels] = 0
    bn.bias.data[channels] = 0


def _some(low: int, high: int, k: int, gen) -> torch.Tensor:
    return torch.randperm(high - low, generator=gen)[:k] + low


def test_at_the_same_widths_thinning_copies_the_network(randomize_bns):
    torch.manual_seed(0)
    source = randomize_bns(crunet.create_model("resnet32_cifar", num_classes=10, in_chans=1)).eval()
    target = crunet.create_model("resnet32_cifar", num_classes=10, in_chans=1).eval()
    thin_from_resnet(source, target)
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(target(x), source(x))


def test_dead_channels_are_the_ones_dropped_and_the_function_is_kept(randomize_bns):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    source = randomize_bns(crunet.create_model("resnet32_cifar", num_classes=10, in_chans=1)).eval()
    d0 = _some(0, 16, 6, gen)  # stage 1: 16 -> 10
    d1 = torch.cat((_some(0, 8, 3, gen), d0 + 8, _some(24, 32, 2, gen)))  # 32 -> 21, shortcut A pads 8 | 8
    d2 = torch.cat((_some(0, 16, 6, gen), d1 + 16, _some(48, 64, 5, gen)))  # 64 -> 42, pads 16 | 16
    _kill(source.stem[1], d0)
    for stage, dead, width in zip(source.stages, (d0, d1, d2), (16, 32, 64), strict=True):
        for block in stage.blocks:
            _kill(block.bn2, dead)
            _kill(block.bn1, _some(0, width, width - {16: 10, 32: 21, 64: 42}[width], gen))
    target = crunet.create_model("resnet32_cifar", num_classes=10, in_chans=1, **THIN).eval()
    thin_from_resnet(source, target)
    x = torch.randn(4, 1, 28, 28)
    assert torch.allclose(target(x), source(x), atol=1e-5)


def test_a_target_that_is_not_thinner_is_refused(randomize_bns):
    source = crunet.create_model("resnet32_cifar", num_classes=10, in_chans=1)
    with pytest.raises(ConfigError, match="not a thinner copy of resnet32_cifar"):
        thin_from_resnet(source, crunet.create_model("resnet32_cifar", num_classes=10, in_chans=1,
                                                     widths=(20, 21, 42)))
    with pytest.raises(ConfigError, match="not a thinner copy"):
        thin_from_resnet(source, crunet.create_model("dsfb_resnet32_s16u1", num_classes=10, in_chans=1))
