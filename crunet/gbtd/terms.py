"""A residual function as a Generalized Block Term Decomposition (paper eq. 6): R Tucker terms plus biases.

    T0     = M u + m                              (the unit's input map, if any: BN / projection kept apart)
    T1_r   = A3_r^T T0 + c3_r                     (first 1x1, per term: d3 -> d3*)
    T2_r   = G_r (*) T1_r                         (k x k core, stride s, zero padding k // 2: d3* -> d4*)
    V      = sum_r A4_r T2_r + c4                 (last 1x1 and everything after the core: R d4* -> d4)

In the linear view (activations as identities, BatchNorm in eval mode) this is exactly what a residual unit computes,
borders included. The factors are stored stacked over the terms: ``a3`` (R, d3, d3*), ``core`` (R, k, k, d3*, d4*),
``a4`` (R, d4, d4*), with the paper's index order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from crunet.gbtd.affine import Affine

if TYPE_CHECKING:
    from crunet.layers.shared_factors import SharedFactors


def core_to_conv(core: Tensor) -> Tensor:
    """(R, k, k, d3*, d4*) -> grouped conv weight (R d4*, d3*, k, k)."""
    r, k1, k2, d3s, d4s = core.shape
    return core.permute(0, 4, 3, 1, 2).reshape(r * d4s, d3s, k1, k2)


def conv_to_core(weight: Tensor, groups: int) -> Tensor:
    """Grouped conv weight (R d4*, d3*, k, k) -> (R, k, k, d3*, d4*); a view when the weight is contiguous."""
    out, d3s, k1, k2 = weight.shape
    return weight.view(groups, out // groups, d3s, k1, k2).permute(0, 3, 4, 2, 1)


def a3_to_conv(a3: Tensor) -> Tensor:
    """(R, d3, d3*) -> 1x1 conv weight (R d3*, d3, 1, 1)."""
    r, d3, d3s = a3.shape
    return a3.transpose(1, 2).reshape(r * d3s, d3, 1, 1)


def a4_to_matrix(a4: Tensor) -> Tensor:
    """(R, d4, d4*) -> the last 1x1 as a (d4, R d4*) matrix."""
    r, d4, d4s = a4.shape
    return a4.permute(1, 0, 2).reshape(d4, r * d4s)


@dataclass(frozen=True)
class GBTD:
    a3: Tensor
    core: Tensor
    a4: Tensor
    bias3: Tensor  # (R, d3*): added to each term's A3 output, i.e. to the core's input (carried by BN biases)
    bias4: Tensor  # (d4,)
    stride: int = 1
    input_map: Affine | None = None  # per-unit map before A3 (a CRU's norm1, its projection): never shared
    shared: SharedFactors | None = None  # owner of ``a3`` and ``core`` when they are shared (they are its views)

    def __post_init__(self) -> None:
        r, d3, d3s = self.a3.shape
        if self.core.shape[0] != r or self.a4.shape[0] != r or self.core.shape[3] != d3s:
            raise ValueError(f"inconsistent GBTD factors: a3 {tuple(self.a3.shape)}, core {tuple(self.core.shape)}, "
                             f"a4 {tuple(self.a4.shape)}")
        if self.core.shape[4] != self.a4.shape[2]:
            raise ValueError(f"core rank d4*={self.core.shape[4]} does not match a4 {tuple(self.a4.shape)}")

    @property
    def num_terms(self) -> int:
        """R, the number of Tucker terms (groups of the k x k convolution)."""
        return self.a3.shape[0]

    @property
    def ranks(self) -> tuple[int, int]:
        """(d3*, d4*), the rank of every term along the input and output channel modes."""
        return self.a3.shape[2], self.a4.shape[2]

    @property
    def dims(self) -> tuple[int, int]:
        """(d3, d4): channels A3 reads and channels the unit writes."""
        return self.a3.shape[1], self.a4.shape[1]

    @property
    def kernel_size(self) -> int:
        return self.core.shape[1]

    @property
    def in_chs(self) -> int:
        return self.input_map.weight.shape[1] if self.input_map is not None else self.a3.shape[1]

    def factor_params(self) -> int:
        """Entries of A3, G and A4 (biases and the input map excluded)."""
        return self.a3.numel() + self.core.numel() + self.a4.numel()

    def dense_params(self) -> int:
        """Entries of the dense kernel X* (k x k x d3 x d4) the factors represent."""
        d3, d4 = self.dims
        return self.kernel_size ** 2 * d3 * d4

    def kernel(self, include_input_map: bool = True) -> tuple[Tensor, Tensor]:
        """X* as a conv weight (d4, d_in, k, k) and the bias it adds away from the border (eq. 2 with biases)."""
        weight = torch.einsum("roq,rabpq,rip->oiab", self.a4, self.core, self.a3)
        t1_bias = self.bias3
        if include_input_map and self.input_map is not None:
            weight = torch.einsum("oiab,ic->ocab", weight, self.input_map.weight)
            t1_bias = t1_bias + torch.einsum("rip,i->rp", self.a3, self.input_map.bias)
        bias = torch.einsum("roq,rabpq,rp->o", self.a4, self.core, t1_bias) + self.bias4
        return weight, bias

    def residual(self, x: Tensor) -> Tensor:
        """The factored residual function applied to ``x``: the unit's linear view, exact at the border too."""
        if self.input_map is not None:
            x = F.conv2d(x, self.input_map.conv_weight(), self.input_map.bias)
        r = self.num_terms
        x = F.conv2d(x, a3_to_conv(self.a3), self.bias3.reshape(-1))
        x = F.conv2d(x, core_to_conv(self.core), stride=self.stride, padding=self.kernel_size // 2, groups=r)
        return F.conv2d(x, a4_to_matrix(self.a4)[:, :, None, None], self.bias4)
