"""The DSFB blocks for inference: what their ``fuse`` returns.

Post-activation blocks end every convolution in a BN, so each (conv, BN) folds into one convolution with a bias, the
ReLU after it fuses in, and the block's last convolution takes the shortcut as a fused add (then the ReLU). A BN after
a SHARED tensor folds only into a copy of it: ``unshare=False`` keeps the tensor shared (``SharedConvBN`` reads it
from the stage's owner at each call) and runs that BN separately.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from crunet.layers.fused import FusedConv, fold_bn
from crunet.layers.shared_basis import SharedBasis


def conv_bn(conv: nn.Conv2d | Tensor, bn: nn.BatchNorm2d, relu: bool = False, stride: int = 1,
            padding: int | None = None, groups: int = 1) -> FusedConv:
    """``conv`` (a module, or a bare weight with ``stride``/``padding``/``groups``) then ``bn`` [then a ReLU] as one
    convolution with a bias."""
    if isinstance(conv, nn.Conv2d):
        weight, bias, stride, padding, groups = conv.weight, conv.bias, conv.stride[0], conv.padding[0], conv.groups
    else:
        weight, bias = conv, None
        padding = weight.shape[-1] // 2 if padding is None else padding
    w, b = fold_bn(weight, bias, bn)
    return FusedConv(w, b, stride, padding, groups, relu=relu)


def fuse_shared(owner: SharedBasis, bn: nn.BatchNorm2d, unshare: bool, relu: bool) -> nn.Module:
    """A stride-1 convolution on ``owner``'s (first) filters, then ``bn`` [then a ReLU]: folded into a copy of the
    filters when ``unshare``, else the filters stay the owner's and the BN runs after them."""
    if unshare:
        return conv_bn(owner.weight().detach(), bn, relu)
    return SharedConvBN(owner, bn, relu)


def fold_sequential(seq: nn.Sequential) -> nn.Sequential:
    """A plain (Conv2d, BatchNorm2d, activation...) sequence with each conv -> BN pair folded into the conv."""
    out: list[nn.Module] = []
    for module in seq:
        if isinstance(module, nn.BatchNorm2d) and out and isinstance(out[-1], nn.Conv2d):
            out[-1] = conv_bn(out[-1], module)
        else:
            out.append(module)
    return nn.Sequential(*out)


class SharedConvBN(nn.Module):
    """Inference: a convolution reading the owner's shared filters (one tensor, not copied), its BN, then
    [+ residual] [-> ReLU]."""

    def __init__(self, owner: SharedBasis, bn: nn.BatchNorm2d, relu: bool):
        super().__init__()
        self.__dict__["_owner"] = owner  # a reference: the stage keeps the owner
        self.bn, self.relu, self.padding = bn, relu, owner.kernel_size // 2

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        y = self.bn(F.conv2d(x, self._owner.weight().to(x.dtype), None, 1, self.padding))
        if residual is not None:
            y = y + residual
        return F.relu(y, inplace=True) if self.relu else y


class FusedBlock(nn.Module):
    """``main`` convolutions in order, the last taking the shortcut (``shortcut(x)``, or ``x``) as a fused add when
    ``residual``; with a ``gate`` (ECA) the gate runs on the last convolution's output before the add."""

    def __init__(self, main: list[nn.Module], shortcut: nn.Module | None = None, residual: bool = True,
                 gate: nn.Module | None = None):
        super().__init__()
        self.main = nn.ModuleList(main)
        self.shortcut, self.residual, self.gate = shortcut, residual, gate

    def forward(self, x: Tensor) -> Tensor:
        out = x
        for conv in self.main[:-1]:
            out = conv(out)
        res = (self.shortcut(x) if self.shortcut is not None else x) if self.residual else None
        if self.gate is None:
            return self.main[-1](out, res)
        out = self.gate(self.main[-1](out))
        return out + res if res is not None else out
