"""CRU-Net: Collective Residual Units in conv3/conv4, plain pre-activation ResNeXt units elsewhere.

Widths follow the authors' released code (cru-net.md section 5). ``crunet116_wide`` and ``crunet56_136x1d`` have no
released definition: they are reconstructions from the paper's sizes.
"""

from __future__ import annotations

import functools

from crunet.models._registry import register_model
from crunet.models.design import NetCfg, bottleneck_stages
from crunet.models.preact_resnet import CRUNET_RELEASED_MEAN, CRUNET_RELEASED_STD, PreActResNet
from crunet.models.width_solver import solve_width

SHARE_EVERY = 6  # "parameters are only shared within every six layers": six units per sharing group
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
