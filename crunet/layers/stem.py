"""The stem of the pre-activation networks: conv -> BN-ReLU (-> max pool)."""

from __future__ import annotations

from torch import nn

from crunet.errors import ConfigError
from crunet.layers.bn_act_conv import BnAct
from crunet.layers.fused_unit import conv_bn_relu

STEM_KINDS = ("imagenet", "small")


class PreActStem(nn.Sequential):
    """"imagenet": conv 7x7/2 -> BN-ReLU -> max pool 3x3/2 (reduction 4); "small": conv 3x3/1 -> BN-ReLU."""

    def __init__(self, kind: str, in_chans: int, out_chs: int, bn_eps: float = 1e-5):
        if kind not in STEM_KINDS:
            raise ConfigError(f"stem must be one of {STEM_KINDS}, got {kind!r}")
        if kind == "imagenet":
            super().__init__(nn.Conv2d(in_chans, out_chs, 7, 2, padding=3, bias=False), BnAct(out_chs, bn_eps),
                             nn.MaxPool2d(3, 2, padding=1))
        else:
            super().__init__(nn.Conv2d(in_chans, out_chs, 3, 1, padding=1, bias=False), BnAct(out_chs, bn_eps))

    def fuse(self, unshare: bool = True) -> nn.Module:
        """The conv, its BN and ReLU as one convolution with a bias (then the pool); nothing here is shared."""
        return nn.Sequential(conv_bn_relu(self[0], self[1].bn), *list(self)[2:])
