"""``operator(unit)``: the 4th-order kernel X* of a residual unit's linear view, as one convolution.

Away from the border, the linearized unit (``linearized``, eval mode) *is* ``conv2d(x, weight, bias, stride=s,
padding=k // 2)``. At the 1-pixel border it is not, and cannot be: the unit zero-pads an intermediate (the core's input
T1 = A3^T u + c3) that carries a bias, so taps falling outside the image contribute nothing there, whereas the single
convolution zero-pads the input u, whose taps outside the image still see the bias c3 folded into its constant
``bias``. Zero padding of an intermediate that carries a bias is not zero padding of the input.
"""

from __future__ import annotations

import torch
from torch import Tensor

from crunet.gbtd.affine import bn_as_affine, conv1x1_matrix
from crunet.gbtd.factors import factors
from crunet.layers.residual_unit import ResidualUnit


def operator(unit: ResidualUnit, shortcut: bool = False) -> tuple[Tensor, Tensor]:
    """X* as a conv weight (d4, d_in, k, k) and bias (d4,); with ``shortcut`` the identity or projection shortcut is
    added to the centre tap, so that the whole linearized unit is that one convolution (stride s, padding k // 2)."""
    gbtd = factors(unit)
    with torch.no_grad():
        weight, bias = gbtd.kernel()
        if shortcut:
            matrix, short_bias = shortcut_map(unit)
            centre = gbtd.kernel_size // 2
            weight = weight.clone()
            weight[:, :, centre, centre] += matrix
            bias = bias + short_bias
    return weight, bias


def shortcut_map(unit: ResidualUnit) -> tuple[Tensor, Tensor]:
    """The unit's shortcut as a (d4, d_in) matrix and bias, applied at the unit's stride."""
    like = unit.conv3.conv.weight.detach()
    if unit.proj is not None:  # CRU first unit: the projection weight, with its own BN
        bn = bn_as_affine(unit.proj_short_norm.bn).then(conv1x1_matrix(unit.proj))
        return bn.weight, bn.bias
    if unit.shortcut is not None:
        bn = bn_as_affine(unit.shortcut.norm.bn).then(conv1x1_matrix(unit.shortcut.conv.weight))
        return bn.weight, bn.bias
    return torch.eye(unit.out_chs, dtype=like.dtype, device=like.device), like.new_zeros(unit.out_chs)
