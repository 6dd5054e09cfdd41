"""The full-size zoo of ``PreActResNet`` (224 px, four stages): CRU-Net and the pre-activation baselines of the
paper's Tables 1-4 (ResNet, ResNeXt, N x 1d, Wide ResNet). The small-image zoo of the same network is ``small.py``.

CRU-Net: Collective Residual Units in conv3/conv4, plain pre-activation ResNeXt units elsewhere. Widths follow the
authors' released code (README: "Where our numbers differ from the CRU-Net paper's"). ``crunet116_wide`` and
``crunet56_136x1d`` have no released definition: they are reconstructions from the paper's sizes.
"""

from __future__ import annotations

import functools

from crunet.models._registry import register_model
from crunet.models.design import NetCfg, bottleneck_stages
from crunet.models.preact_resnet import PreActResNet
from crunet.models.width_solver import solve_width

SHARE_EVERY = 6  # "parameters are only shared within every six layers": six units per sharing group
# The released CRU-Net models: (RGB - [124, 117, 104]) * 0.0167, written as mean/std of [0, 1] images.
CRUNET_RELEASED_MEAN = (124 / 255, 117 / 255, 104 / 255)
CRUNET_RELEASED_STD = (1 / (0.0167 * 255),) * 3
RELEASED = {"mean": CRUNET_RELEASED_MEAN, "std": CRUNET_RELEASED_STD}
BN_EPS_RELEASED = 1e-3  # MXNet's default in the released models

CRUNET56 = NetCfg(bottleneck_stages((3, 4, 6, 3), (128, 256, 640, 1024), (32, 32, None, 32),
                                    share_every=(0, 0, SHARE_EVERY, 0)), bn_eps=BN_EPS_RELEASED)
CRUNET116 = NetCfg(bottleneck_stages((3, 6, 18, 3), (128, 352, 704, 1024), (32, None, None, 32),
                                     share_every=(0, SHARE_EVERY, SHARE_EVERY, 0)), bn_eps=BN_EPS_RELEASED)
CRUNET116_WIDE = NetCfg(bottleneck_stages((3, 6, 18, 3), (256, 576, 1152, 2048), (64, None, None, 64),
                                          share_every=(0, SHARE_EVERY, SHARE_EVERY, 0)), bn_eps=BN_EPS_RELEASED)
CRUNET56_PARAMS = 25_609_384


def crunet56_136x1d_design(conv4_width: int) -> NetCfg:
    return NetCfg(bottleneck_stages((3, 4, 6, 3), (136, 272, conv4_width, 1088), (136, 136, None, 136),
                                    share_every=(0, 0, SHARE_EVERY, 0)), bn_eps=BN_EPS_RELEASED)


@functools.cache
def crunet56_136x1d_width() -> int:
    """conv4's width solved so that the model has as many parameters as ``crunet56``."""
    return solve_width(crunet56_136x1d_design, CRUNET56_PARAMS)


@register_model
def crunet56(**kwargs):
    """CRU-Net-56 @x14, 32x4d: 25,609,384 parameters."""
    return PreActResNet.create("crunet56", CRUNET56, pretrained_cfg=RELEASED, **kwargs)


@register_model
def crunet116(**kwargs):
    """CRU-Net-116 @x28x14, 32x4d: 43,656,136 parameters."""
    return PreActResNet.create("crunet116", CRUNET116, pretrained_cfg=RELEASED, **kwargs)


@register_model
def crunet116_wide(**kwargs):
    """CRU-Net-116 wider, 64x4d (a reconstruction: widths inferred from the paper's 318 MB)."""
    return PreActResNet.create("crunet116_wide", CRUNET116_WIDE, pretrained_cfg=RELEASED, **kwargs)


@register_model
def crunet56_136x1d(**kwargs):
    """CRU-Net-56 @x14, 136x1d (a reconstruction: conv4 width solved to match crunet56's size)."""
    design = crunet56_136x1d_design(crunet56_136x1d_width())
    return PreActResNet.create("crunet56_136x1d", design, pretrained_cfg=RELEASED, **kwargs)


# --- the pre-activation baselines (R=1: ResNet, Wide ResNet; R=cardinality: ResNeXt; R=D: N x 1d) ---

DEPTHS_50, DEPTHS_101, DEPTHS_200 = (3, 4, 6, 3), (3, 4, 23, 3), (3, 24, 36, 3)

PRERESNET50 = NetCfg(bottleneck_stages(DEPTHS_50, (64, 128, 256, 512), 1))
PRERESNET101 = NetCfg(bottleneck_stages(DEPTHS_101, (64, 128, 256, 512), 1))
PRERESNET200 = NetCfg(bottleneck_stages(DEPTHS_200, (64, 128, 256, 512), 1))
PRERESNEXT50_32X4D = NetCfg(bottleneck_stages(DEPTHS_50, (128, 256, 512, 1024), 32))
PRERESNEXT50_2X40D = NetCfg(bottleneck_stages(DEPTHS_50, (80, 160, 320, 640), 2))
PRERESNEXT50_136X1D = NetCfg(bottleneck_stages(DEPTHS_50, (136, 272, 544, 1088), 136))
PRERESNEXT50_NX1D = NetCfg(bottleneck_stages(DEPTHS_50, (136, 272, 544, 1088), None))
PRERESNEXT101_32X4D = NetCfg(bottleneck_stages(DEPTHS_101, (128, 256, 512, 1024), 32))
PRERESNEXT101_64X4D = NetCfg(bottleneck_stages(DEPTHS_101, (256, 512, 1024, 2048), 64))
PREWRN50_2 = NetCfg(bottleneck_stages(DEPTHS_50, (128, 256, 512, 1024), 1))


@register_model
def preresnet50(**kwargs):
    """ResNet-50, 1x64d."""
    return PreActResNet.create("preresnet50", PRERESNET50, **kwargs)


@register_model
def preresnet101(**kwargs):
    """ResNet-101, 1x64d."""
    return PreActResNet.create("preresnet101", PRERESNET101, **kwargs)


@register_model
def preresnet200(**kwargs):
    """ResNet-200, 1x64d (the paper's Tables 3-4 reference)."""
    return PreActResNet.create("preresnet200", PRERESNET200, **kwargs)


@register_model
def preresnext50_32x4d(**kwargs):
    """ResNeXt-50, R=32 Tuckers of rank 4 in conv2."""
    return PreActResNet.create("preresnext50_32x4d", PRERESNEXT50_32X4D, **kwargs)


@register_model
def preresnext50_2x40d(**kwargs):
    """ResNeXt-50, 2x40d (Table 2)."""
    return PreActResNet.create("preresnext50_2x40d", PRERESNEXT50_2X40D, **kwargs)


@register_model
def preresnext50_136x1d(**kwargs):
    """ResNeXt-50, 136x1d (Table 2)."""
    return PreActResNet.create("preresnext50_136x1d", PRERESNEXT50_136X1D, **kwargs)


@register_model
def preresnext50_nx1d(**kwargs):
    """ResNeXt-50, N x 1d: depthwise 3x3 (R = channels, Tables 1-2)."""
    return PreActResNet.create("preresnext50_nx1d", PRERESNEXT50_NX1D, **kwargs)


@register_model
def preresnext101_32x4d(**kwargs):
    """ResNeXt-101, 32x4d (Table 4)."""
    return PreActResNet.create("preresnext101_32x4d", PRERESNEXT101_32X4D, **kwargs)


@register_model
def preresnext101_64x4d(**kwargs):
    """ResNeXt-101 wider, 64x4d (Table 4)."""
    return PreActResNet.create("preresnext101_64x4d", PRERESNEXT101_64X4D, **kwargs)


@register_model
def prewrn50_2(**kwargs):
    """Wide ResNet-50-2 (1x128d)."""
    return PreActResNet.create("prewrn50_2", PREWRN50_2, **kwargs)
