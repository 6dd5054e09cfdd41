"""The small-image family: 3x3 stem and three stages for 28-32 px inputs, sized for CPU experiments.

``crunet_small`` turns the last two stages of ``preresnext_small`` into Collective Residual Units (groups of three)
and takes the bottleneck width the width solver finds to match ``preresnext_small``'s parameter count, so the two can
be compared at equal size. ``crunet_small_plain_last`` shares as the released CRU-Nets do: its last stage stays a
plain ResNeXt stage, and only the middle stage is collective, at the width that matches the same count.
"""

from __future__ import annotations

import functools

from crunet.models._registry import register_model
from crunet.models.design import NetCfg, StageCfg
from crunet.models.preact_resnet import PreActResNet
from crunet.models.width_solver import params_of, solve_width

FASHION_MNIST = {"mean": (0.2860,), "std": (0.3530,)}
STEM_CHS = 32


def _small(stages: tuple[StageCfg, ...]) -> NetCfg:
    return NetCfg(stages, stem="small", stem_chs=STEM_CHS)


PRERESNET_SMALL = _small((StageCfg(2, 64, 16, 1), StageCfg(3, 128, 32, 1), StageCfg(3, 256, 64, 1)))
PRERESNEXT_SMALL = _small((StageCfg(2, 64, 32, 8), StageCfg(3, 128, 64, 8), StageCfg(3, 256, 128, 8)))


def crunet_small_design(width: int) -> NetCfg:
    """CRU stages of bottleneck width ``width`` and ``2 * width``, three units per sharing group."""
    return _small((StageCfg(2, 64, 32, 8), StageCfg(3, 128, width, None, share_every=3),
                   StageCfg(3, 256, 2 * width, None, share_every=3)))


@functools.cache
def crunet_small_width() -> int:
    target = params_of(PRERESNEXT_SMALL, num_classes=10, in_chans=1)
    return solve_width(crunet_small_design, target, multiple=4, num_classes=10, in_chans=1)


def crunet_small_plain_last_design(width: int) -> NetCfg:
    """A CRU middle stage of bottleneck width ``width`` (three units per sharing group) between plain ResNeXt
    stages, as CRU-Net-56 shares conv4 only and keeps conv5 plain."""
    first, _, last = PRERESNEXT_SMALL.stages
    return _small((first, StageCfg(3, 128, width, None, share_every=3), last))


@functools.cache
def crunet_small_plain_last_width() -> int:
    target = params_of(PRERESNEXT_SMALL, num_classes=10, in_chans=1)
    return solve_width(crunet_small_plain_last_design, target, multiple=4, num_classes=10, in_chans=1)


@register_model
def preresnet_small(**kwargs):
    """Pre-activation ResNet for 28-32 px images (R=1)."""
    return PreActResNet.create("preresnet_small", PRERESNET_SMALL, pretrained_cfg=FASHION_MNIST, **kwargs)


@register_model
def preresnext_small(**kwargs):
    """Pre-activation ResNeXt for 28-32 px images (R=8)."""
    return PreActResNet.create("preresnext_small", PRERESNEXT_SMALL, pretrained_cfg=FASHION_MNIST, **kwargs)


@register_model
def crunet_small(**kwargs):
    """CRU-Net for 28-32 px images, parameter-matched to preresnext_small."""
    design = crunet_small_design(crunet_small_width())
    return PreActResNet.create("crunet_small", design, pretrained_cfg=FASHION_MNIST, **kwargs)


@register_model
def crunet_small_plain_last(**kwargs):
    """CRU-Net for 28-32 px images sharing as the released CRU-Nets do (last stage plain ResNeXt), parameter-matched
    to preresnext_small."""
    design = crunet_small_plain_last_design(crunet_small_plain_last_width())
    return PreActResNet.create("crunet_small_plain_last", design, pretrained_cfg=FASHION_MNIST, **kwargs)
