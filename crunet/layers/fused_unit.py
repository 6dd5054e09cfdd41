"""A pre-activation residual unit for inference, with every BatchNorm that can be folded folded: what
``ResidualUnit.fuse`` returns.

In BN-ReLU-Conv units a BN folds BACKWARD into the convolution before it (scaling that conv's output channels),
when that convolution feeds only this BN and is not shared:

- the unit's first BN (and the projection shortcut's BN) read the residual stream, a sum: they stay, as BN-ReLU;
- the BN before the 3x3 folds into the first 1x1, the BN before the last 1x1 into the 3x3 (or the extra 1x1);
- the last 1x1 takes the residual add as a fused post-op.

In a Collective Residual Unit two BNs follow a SHARED convolution: the BN after the group's 3x3 (per unit) and, in
the first unit of a CRU stage, the BN after the stride-1 use of the projection ``proj``. Folding them gives each
unit its own copy of that weight. ``unshare=True`` folds them (fewer passes over the activations, more parameters);
``unshare=False`` keeps the weight shared and the BN as a separate BN-ReLU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from crunet.layers.bn_act_conv import BnAct
from crunet.layers.fused import FusedConv, fold_bn

if TYPE_CHECKING:
    from crunet.layers.residual_unit import ResidualUnit


def conv_bn_relu(conv: nn.Conv2d | Tensor, bn: nn.BatchNorm2d, stride: int = 1, groups: int = 1) -> FusedConv:
    """``conv`` followed by ``bn`` and a ReLU, as one convolution with a bias."""
    if isinstance(conv, nn.Conv2d):
        weight, bias, stride, padding, groups = conv.weight, conv.bias, conv.stride[0], conv.padding[0], conv.groups
    else:
        weight, bias, padding = conv, None, conv.shape[-1] // 2
    w, b = fold_bn(weight, bias, bn)
    return FusedConv(w, b, stride, padding, groups, relu=True)


def _plain(conv: nn.Conv2d) -> FusedConv:
    return FusedConv(conv.weight, conv.bias, conv.stride[0], conv.padding[0], conv.groups)


class DeployedUnit(nn.Module):
    """shortcut = x | conv(BN-ReLU(x)); y = BN-ReLU(x) -> folded convolutions -> last 1x1 + shortcut."""

    def __init__(self, unit: ResidualUnit, unshare: bool = True):
        super().__init__()
        self.short_norm: BnAct | None = None
        self.short_conv: FusedConv | None = None
        self.proj: nn.Parameter | None = None
        self.stride = unit.stride
        self.unshare = unshare
        if unit.factors is None:
            self.norm, main = self._unshared(unit)
        else:
            self.norm, main = self._shared(unit, unshare)
        if unit.conv_mix is not None:
            main.append(conv_bn_relu(unit.conv_mix.conv, unit.conv3.norm.bn))
        main.append(_plain(unit.conv3.conv))
        self.main = nn.ModuleList(main)

    def _unshared(self, unit: ResidualUnit) -> tuple[BnAct, list[nn.Module]]:
        if unit.shortcut is not None:
            self.short_norm, self.short_conv = unit.shortcut.norm, _plain(unit.shortcut.conv)
        after_3x3 = unit.conv_mix.norm.bn if unit.conv_mix is not None else unit.conv3.norm.bn
        main = [conv_bn_relu(unit.conv1.conv, unit.conv2.norm.bn), conv_bn_relu(unit.conv2.conv, after_3x3)]
        return unit.conv1.norm, main

    def _shared(self, unit: ResidualUnit, unshare: bool) -> tuple[BnAct, list[nn.Module]]:
        factors, main = unit.factors, []
        norm = unit.norm1
        if unit.proj is not None:  # one weight used twice: stride 1 into norm1, the unit's stride as the shortcut
            self.proj = nn.Parameter(unit.proj.detach().clone(), requires_grad=False)
            self.short_norm = unit.proj_short_norm
            self.short_conv = FusedConv(None, stride=unit.stride, owner=self, name="proj")
            if unshare:
                main.append(conv_bn_relu(unit.proj, unit.norm1.bn))
            else:
                main += [FusedConv(None, owner=self, name="proj"), unit.norm1]
            norm = unit.proj_in_norm
        main.append(FusedConv(None, owner=factors, name="reduce"))
        after_3x3 = unit.conv_mix.norm if unit.conv_mix is not None else unit.conv3.norm
        pad = factors.kernel_size // 2
        if unshare:
            main.append(conv_bn_relu(factors.spatial, after_3x3.bn, unit.stride, unit.groups))
        else:
            main += [FusedConv(None, None, unit.stride, pad, unit.groups, owner=factors, name="spatial"), after_3x3]
        return norm, main

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.short_conv is None else self.short_conv(self.short_norm(x))
        y = self.norm(x)
        for layer in self.main[:-1]:
            y = layer(y)
        return self.main[-1](y, residual=shortcut)
