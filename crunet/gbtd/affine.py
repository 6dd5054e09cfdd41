"""Per-pixel affine maps (``y = W x + b``): an eval-mode BatchNorm, a 1x1 convolution, their compositions."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Affine:
    """``y = weight @ x + bias`` on the channels of every pixel; ``weight`` is (out, in), ``bias`` is (out,)."""

    weight: Tensor
    bias: Tensor

    def then(self, weight: Tensor, bias: Tensor | None = None) -> Affine:
        """This map followed by ``x -> weight @ x + bias``."""
        out_bias = weight @ self.bias + (bias if bias is not None else 0)
        return Affine(weight @ self.weight, out_bias)

    def conv_weight(self) -> Tensor:
        return self.weight[:, :, None, None]


def bn_affine(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Scale and shift of a BatchNorm in eval mode: ``bn(x) = scale * x + shift`` per channel."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("a BatchNorm without running statistics is not an affine map: it has no eval mode")
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale.detach(), shift.detach()


def bn_as_affine(bn: nn.BatchNorm2d) -> Affine:
    scale, shift = bn_affine(bn)
    return Affine(torch.diag(scale), shift)


def conv1x1_matrix(weight: Tensor) -> Tensor:
    """A 1x1 convolution's weight (out, in, 1, 1) as the (out, in) matrix it multiplies every pixel with."""
    if weight.shape[-2:] != (1, 1):
        raise ValueError(f"expected a 1x1 convolution weight, got shape {tuple(weight.shape)}")
    return weight.detach()[:, :, 0, 0]


def set_identity_bn(bn: nn.BatchNorm2d) -> None:
    """Make a BatchNorm the identity in eval mode, exactly (running_var = 1 - eps)."""
    with torch.no_grad():
        bn.weight.fill_(1.0)
        bn.bias.zero_()
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
