"""The residual unit of the GBTD family.

A pre-activation bottleneck  BN-ReLU-1x1 (d3 -> D) ; BN-ReLU-3x3 (D -> D, R groups) ; BN-ReLU-1x1 (D -> d3)  is a
Generalized Block Term Decomposition with R terms. Its configurations are the residual units the paper compares:

==============================  =========================  =====================================
unit                            R (``groups``)             sharing
==============================  =========================  =====================================
ResNet / Wide ResNet            1                          none
ResNeXt                         cardinality                none
"N x 1d"                        D (depthwise)              none
Collective Residual Unit (CRU)  any (CRU-Net uses D)       1x1 + 3x3 owned by a ``SharedFactors``
==============================  =========================  =====================================

A shared unit applies the group's 1x1 and 3x3 back to back (a BN cannot be shared, so there is none between them)
and, with ``extra_1x1``, restores the lost non-linearity with a per-unit BN-ReLU-1x1 (D -> D) before the last 1x1.
The first unit of a CRU stage brings its input to d3 with one 1x1 weight ``proj`` that it uses twice, with two BNs:
at stride 1 to feed the shared 1x1, and at the unit's stride as the projection shortcut (the released code).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crunet.errors import ConfigError
from crunet.layers.bn_act_conv import BnAct, BnActConv
from crunet.layers.complexity import Cx, conv_cx, norm_cx
from crunet.layers.fused_unit import DeployedUnit
from crunet.layers.shared_factors import SharedFactors


class ResidualUnit(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, width: int, groups: int = 1, stride: int = 1,
                 factors: SharedFactors | None = None, extra_1x1: bool = False, bn_eps: float = 1e-5):
        super().__init__()
        if width % groups:
            raise ConfigError(f"width={width} is not divisible by groups={groups}")
        if factors is not None and (factors.in_chs, factors.width) != (out_chs, width):
            raise ConfigError(f"shared factors map {factors.in_chs} -> {factors.width} channels but this unit needs "
                             f"{out_chs} -> {width}")
        self.in_chs, self.out_chs, self.width, self.stride = in_chs, out_chs, width, stride
        self.groups = factors.groups if factors is not None else groups
        self.__dict__["_factors"] = factors  # a reference, not a child: the sharing group owns these tensors
        projects = stride != 1 or in_chs != out_chs

        self.shortcut = BnActConv(in_chs, out_chs, 1, stride, bn_eps=bn_eps) if projects and not factors else None
        if projects and factors is not None:
            self.proj = nn.Parameter(torch.empty(out_chs, in_chs, 1, 1))
            self.proj_in_norm = BnAct(in_chs, bn_eps)
            self.proj_short_norm = BnAct(in_chs, bn_eps)
            nn.init.kaiming_normal_(self.proj, mode="fan_out", nonlinearity="relu")
        else:
            self.proj = None

        if factors is None:
            self.conv1 = BnActConv(in_chs, width, 1, bn_eps=bn_eps)
            self.conv2 = BnActConv(width, width, 3, stride, groups, bn_eps=bn_eps)
        else:
            self.norm1 = BnAct(out_chs, bn_eps)
        self.conv_mix = BnActConv(width, width, 1, bn_eps=bn_eps) if extra_1x1 else None
        self.conv3 = BnActConv(width, out_chs, 1, bn_eps=bn_eps)

    @property
    def factors(self) -> SharedFactors | None:
        """The sharing group's factors this unit uses (None for an unshared unit)."""
        return self._factors

    def zero_init_last(self) -> None:
        # The last BN of a pre-activation unit feeds a ReLU: zeroing its scale would also zero its gradient
        # (ReLU'(0) = 0), so the last conv is zeroed instead, which makes the unit start as the identity too.
        nn.init.zeros_(self.conv3.conv.weight)

    def _input_and_shortcut(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.proj is not None:
            x_in = F.conv2d(self.proj_in_norm(x), self.proj)
            return x_in, F.conv2d(self.proj_short_norm(x), self.proj, stride=self.stride)
        return x, (self.shortcut(x) if self.shortcut is not None else x)

    def _reduce_and_spatial(self, x: Tensor) -> Tensor:
        factors = self._factors
        if factors is None:
            return self.conv2(self.conv1(x))
        x = F.conv2d(self.norm1(x), factors.reduce)
        return F.conv2d(x, factors.spatial, stride=self.stride, padding=factors.kernel_size // 2, groups=self.groups)

    def forward(self, x: Tensor) -> Tensor:
        x_in, shortcut = self._input_and_shortcut(x)
        x = self._reduce_and_spatial(x_in)
        if self.conv_mix is not None:
            x = self.conv_mix(x)
        return self.conv3(x) + shortcut

    def fuse(self, unshare: bool = True) -> DeployedUnit:
        """This unit for inference, its foldable BNs folded (see ``crunet.layers.fused_unit``). With ``unshare`` the
        BN after the shared 3x3 folds into a copy of it; the stage then drops its shared 3x3 (``Stage.fuse``)."""
        return DeployedUnit(self, unshare)

    def complexity(self, cx: Cx) -> Cx:
        start = cx.shape_only()
        if self.proj is not None:  # one weight, two uses: owned by the shortcut's count, used again by the input
            shortcut = conv_cx(norm_cx(start), self.out_chs, 1, self.stride)
            main = conv_cx(norm_cx(start), self.out_chs, 1, owns_weight=False)
        elif self.shortcut is not None:
            shortcut, main = self.shortcut.complexity(start), start
        else:
            shortcut, main = start, start
        if self._factors is None:
            main = self.conv2.complexity(self.conv1.complexity(main))
        else:
            main = conv_cx(norm_cx(main), self.width, 1, owns_weight=False)
            main = conv_cx(main, self.width, self._factors.kernel_size, self.stride, self.groups, owns_weight=False)
        if self.conv_mix is not None:
            main = self.conv_mix.complexity(main)
        main = self.conv3.complexity(main)
        return cx.then(shortcut).then(main)

    def extra_repr(self) -> str:
        shared = ", shared" if self._factors is not None else ""
        return (f"in_chs={self.in_chs}, out_chs={self.out_chs}, width={self.width}, groups={self.groups}, "
                f"stride={self.stride}{shared}")

