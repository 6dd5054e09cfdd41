"""``factors(unit)``: a residual unit's GBTD, with every eval-mode BatchNorm absorbed into the nearest factor.

Where each BN goes (paper section 3.3: a BN is an affine map and can be absorbed), chosen so that the factored form
computes exactly what the unit computes, borders included:

- a BN before the first 1x1 multiplies A3's rows (its shift becomes ``bias3``), unless ``keep_input_norm``;
- a BN between the first 1x1 and the k x k multiplies A3's columns (its shift is ``bias3``): absorbing it into the
  core instead would need a position-dependent bias at the zero-padded border;
- BNs after the core (and a CRU's extra 1x1 with its BN) fold into A4; their shifts become ``bias4``.

A CRU unit's A3 and G are its group's ``SharedFactors`` tensors themselves (views, no copy), so every unit of a group
returns the same A3 and G. Its own BN before them cannot be absorbed into shared factors: it stays apart as the
``input_map``, which for the first unit of a stage also carries the projection ``proj`` and its input BN.
"""

from __future__ import annotations

import torch

from crunet.gbtd.affine import Affine, bn_affine, bn_as_affine, conv1x1_matrix
from crunet.gbtd.linearize import is_unit
from crunet.gbtd.terms import GBTD, conv_to_core
from crunet.layers.residual_unit import ResidualUnit


def factors(unit: ResidualUnit, keep_input_norm: bool = False) -> GBTD:
    """The GBTD of ``unit``'s residual function (linear view, BN in eval mode). ``keep_input_norm`` keeps an
    unshared unit's first BN as ``input_map`` instead of absorbing it into A3 (a CRU unit always keeps it)."""
    if not is_unit(unit):
        raise TypeError(f"factors() takes a residual unit (crunet.layers.ResidualUnit), got {type(unit).__name__}")
    with torch.no_grad():
        if unit.factors is None:
            return _unshared(unit, keep_input_norm)
        return _shared(unit)


def _split_a3(matrix: torch.Tensor, groups: int) -> torch.Tensor:
    """A first 1x1 as a (D, d3) matrix -> (R, d3, d3*)."""
    width, d3 = matrix.shape
    return matrix.view(groups, width // groups, d3).transpose(1, 2)


def _split_a4(matrix: torch.Tensor, groups: int) -> torch.Tensor:
    """A last 1x1 as a (d4, D) matrix -> (R, d4, d4*)."""
    d4, width = matrix.shape
    return matrix.reshape(d4, groups, width // groups).permute(1, 0, 2)


def _tail(unit: ResidualUnit) -> tuple[torch.Tensor, torch.Tensor]:
    """Everything after the core as one affine map (D -> d4): [BN-1x1 (conv_mix)] then BN-1x1 (conv3)."""
    like = unit.conv3.conv.weight
    tail = Affine(torch.eye(unit.width, dtype=like.dtype, device=like.device), like.new_zeros(unit.width))
    for block in (unit.conv_mix, unit.conv3):
        if block is not None:
            bn = bn_as_affine(block.norm.bn)
            tail = tail.then(bn.weight, bn.bias).then(conv1x1_matrix(block.conv.weight))
    return tail.weight, tail.bias


def _unshared(unit: ResidualUnit, keep_input_norm: bool) -> GBTD:
    groups = unit.groups
    s1, b1 = bn_affine(unit.conv1.norm.bn)
    s2, b2 = bn_affine(unit.conv2.norm.bn)
    w1 = conv1x1_matrix(unit.conv1.conv.weight)
    if keep_input_norm:
        a3, bias3, input_map = s2[:, None] * w1, b2, Affine(torch.diag(s1), b1)
    else:
        a3, bias3, input_map = s2[:, None] * w1 * s1[None, :], s2 * (w1 @ b1) + b2, None
    a4, bias4 = _tail(unit)
    return GBTD(_split_a3(a3, groups), conv_to_core(unit.conv2.conv.weight.detach(), groups), _split_a4(a4, groups),
                bias3.view(groups, -1), bias4, unit.conv2.conv.stride[0], input_map)


def _shared(unit: ResidualUnit) -> GBTD:
    shared, groups = unit.factors, unit.groups
    input_map = bn_as_affine(unit.norm1.bn)
    if unit.proj is not None:
        input_map = bn_as_affine(unit.proj_in_norm.bn).then(conv1x1_matrix(unit.proj)).then(input_map.weight,
                                                                                            input_map.bias)
    a3 = _split_a3(conv1x1_matrix(shared.reduce), groups)
    a4, bias4 = _tail(unit)
    bias3 = a3.new_zeros(groups, a3.shape[2])
    return GBTD(a3, conv_to_core(shared.spatial.detach(), groups), _split_a4(a4, groups), bias3, bias4, unit.stride,
                input_map, shared)
