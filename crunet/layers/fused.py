"""Inference-only building blocks: a convolution with its BatchNorm folded in and its activation
(or the residual add) fused, and the arithmetic of folding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_POINTWISE = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)


def bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """The eval-mode BatchNorm as y = scale * x + shift, computed in float64."""
    device = next((t.device for t in (bn.running_var, bn.weight) if t is not None), None)
    var = bn.running_var.double() if bn.running_var is not None else torch.ones(bn.num_features, dtype=torch.float64,
                                                                                 device=device)
    mean = bn.running_mean.double() if bn.running_mean is not None else torch.zeros_like(var)
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -mean * scale + (bn.bias.double() if bn.bias is not None else 0.0)
    return scale, shift


def fold_bn(weight: Tensor, bias: Tensor | None, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Weight and bias of ``bn(conv(x, weight, bias))`` as one convolution: the BN scales the output channels."""
    scale, shift = bn_scale_shift(bn)
    w = weight.detach().double() * scale.view(-1, *([1] * (weight.dim() - 1)))
    b = shift if bias is None else bias.detach().double() * scale + shift
    return w.to(weight.dtype), b.to(weight.dtype)


def _fusable(x: Tensor) -> bool:
    """oneDNN's fused convolution serves float CPU tensors outside autograd, autocast and torch.compile (which
    fuses the plain ops itself)."""
    return (_POINTWISE is not None and not torch.compiler.is_compiling() and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.bfloat16)
            and not (torch.is_grad_enabled() and x.requires_grad) and not torch.is_autocast_enabled("cpu")
            and torch.backends.mkldnn.is_available())


class FusedConv(nn.Module):
    """Convolution + bias (a folded BatchNorm) + ReLU, or + a residual: one oneDNN call on the CPU, the eager ops
    elsewhere. The weight is owned here, or read from ``owner.<name>`` when it is shared (not copied)."""

    def __init__(self, weight: Tensor | None, bias: Tensor | None = None, stride: int = 1, padding: int = 0,
                 groups: int = 1, relu: bool = False, owner: nn.Module | None = None, name: str = ""):
        super().__init__()
        if (weight is None) == (owner is None):
            raise ValueError("FusedConv needs either its own weight or an owner to read a shared weight from")
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False) if weight is not None else None
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False) if bias is not None else None
        self.__dict__["_owner"] = owner  # a reference, not a child: the owner keeps the tensor once
        self.shared_name = name
        self.stride, self.padding, self.groups, self.relu = stride, padding, groups, relu

    def conv_weight(self) -> Tensor:
        return self.weight if self._owner is None else getattr(self._owner, self.shared_name)

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        w, b = self.conv_weight(), self.bias
        if b is not None and b.dtype != x.dtype:
            b = b.to(x.dtype)
        if _fusable(x) and w.dtype == x.dtype:
            pad, stride = [self.padding] * 2, [self.stride] * 2
            if residual is not None:
                unary = "relu" if self.relu else None  # the ReLU after the add (post-activation blocks)
                return _POINTWISE.binary(x, residual, w, b, pad, stride, [1, 1], self.groups, "add", 1.0, unary, [],
                                         None)
            return _POINTWISE(x, w, b, pad, stride, [1, 1], self.groups, "relu" if self.relu else "none", [], "")
        y = F.conv2d(x, w, b, self.stride, self.padding, 1, self.groups)
        if residual is not None:
            y = y + residual
        return F.relu(y, inplace=True) if self.relu else y

    def extra_repr(self) -> str:
        w = self.conv_weight()
        shared = f", shared={self.shared_name}" if self._owner is not None else ""
        return (f"{w.shape[1] * self.groups}, {w.shape[0]}, kernel_size={tuple(w.shape[2:])}, stride={self.stride}, "
                f"groups={self.groups}, bias={self.bias is not None}, relu={self.relu}{shared}")
