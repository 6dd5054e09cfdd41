"""Deeply Shared Filter Bases: the owner of a stage's shared filters and the convolution that uses them.

A 3x3 convolution of a ResNet block is rewritten as a linear combination of basis filters:

    basis = concat(unique 3x3 (in -> u, stride), SHARED 3x3 (in -> s, stride)) -> BN(u + s)
    out   = 1x1 "coefficients" (u + s -> out) -> BN(out)

``SharedBasis`` is the single owner of the shared filters of one stage: one tensor ("Single" sharing) or several
("Double": one for the first and one for the second convolution of every block), initialized jointly as one
orthogonal tensor split in rows. Users keep an unregistered reference to the owner, so ``state_dict()`` and
``parameters()`` hold each shared tensor once and autograd sums the gradients of every use.

Speed: the unique and the shared filters run as ONE convolution over the filters joined per call
(``torch.cat`` of the two parameters: autograd still sends each part's gradient to its owner), and in training the
basis BN is folded into the 1x1 with the batch's statistics (``crunet.layers.batchnorm_1x1``). ``fuse`` collapses
the whole chain (basis conv, BN, 1x1, BN: linear, nothing between) into one convolution with a bias for inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crunet.errors import ConfigError
from crunet.layers import batchnorm_1x1
from crunet.layers.complexity import Cx, conv_cx, norm_cx
from crunet.layers.fused import FusedConv, bn_scale_shift


class SharedBasis(nn.Module):
    """``count`` shared filter banks of shape (rank, in_chs, k, k), owned here and used by the stage's blocks."""

    def __init__(self, in_chs: int, rank: int, kernel_size: int = 3, count: int = 1):
        super().__init__()
        for field, value in (("in_chs", in_chs), ("rank", rank), ("kernel_size", kernel_size), ("count", count)):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"SharedBasis.{field} must be a positive integer, got {value!r}")
        self.in_chs, self.rank, self.kernel_size, self.count = in_chs, rank, kernel_size, count
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(rank, in_chs, kernel_size, kernel_size)) for _ in range(count))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Orthogonal rows; the banks of a Double pair are initialized as one tensor, then split."""
        joint = torch.empty(self.count * self.rank, self.in_chs, self.kernel_size, self.kernel_size,
                            device=self.weights[0].device, dtype=self.weights[0].dtype)
        nn.init.orthogonal_(joint)
        for weight, part in zip(self.weights, joint.split(self.rank), strict=True):
            weight.copy_(part)

    def weight(self, index: int = 0) -> nn.Parameter:
        return self.weights[index]

    def orthogonality_groups(self, unique: bool = False) -> list[Tensor]:
        """B_g: every shared filter of this owner as a row (a Double pair together, so cross terms count). The owner
        knows no users, so ``unique`` adds nothing here: the stage adds its users' unique filters
        (``DSFBStage.orthogonality_groups``)."""
        return [torch.cat([w.flatten(1) for w in self.weights])]

    def complexity(self, cx: Cx) -> Cx:
        """Only the parameters: the blocks that use the bases count their MACs."""
        return cx.add(params=sum(w.numel() for w in self.weights))

    def extra_repr(self) -> str:
        return f"in_chs={self.in_chs}, rank={self.rank}, kernel_size={self.kernel_size}, count={self.count}"


class SharedBasisConv(nn.Module):
    """A 3x3 convolution rewritten on a unique and a shared basis, with its coefficient 1x1 and BN."""

    def __init__(self, in_chs: int, out_chs: int, unique_rank: int, shared: SharedBasis, index: int = 0,
                 stride: int = 1, bn_eps: float = 1e-5):
        super().__init__()
        if shared.in_chs != in_chs:
            raise ConfigError(f"the shared basis takes {shared.in_chs} channels but this convolution gets {in_chs}")
        if not isinstance(unique_rank, int) or unique_rank < 0:
            raise ConfigError(f"unique_rank must be a non-negative integer, got {unique_rank!r}")
        if not 0 <= index < shared.count:
            raise ConfigError(f"index={index}: the shared basis has {shared.count} bank(s)")
        self.in_chs, self.out_chs, self.unique_rank = in_chs, out_chs, unique_rank
        self.index, self.stride = index, stride
        self.__dict__["_shared"] = shared  # a reference, not a child: the stage owns the shared filters
        k = shared.kernel_size
        self.unique = nn.Conv2d(in_chs, unique_rank, k, stride, k // 2, bias=False) if unique_rank else None
        rank = unique_rank + shared.rank
        self.basis_norm = nn.BatchNorm2d(rank, eps=bn_eps)
        self.coeff = nn.Conv2d(rank, out_chs, 1, bias=False)
        self.norm = nn.BatchNorm2d(out_chs, eps=bn_eps)

    @property
    def shared(self) -> SharedBasis:
        return self._shared

    def basis_weight(self) -> Tensor:
        """The unique and the shared filters as one bank (rank, in, k, k): joined per call, so the shared tensor
        stays the owner's single parameter and receives this use's gradient through the ``cat``."""
        shared = self._shared.weight(self.index)
        return shared if self.unique is None else torch.cat((self.unique.weight, shared))

    def forward(self, x: Tensor) -> Tensor:
        basis = F.conv2d(x, self.basis_weight(), None, self.stride, self._shared.kernel_size // 2)
        if batchnorm_1x1.applies(self.basis_norm, self.coeff, basis):
            return self.norm(batchnorm_1x1.bn_then_1x1(basis, self.basis_norm, self.coeff))
        return self.norm(self.coeff(self.basis_norm(basis)))

    def _reference_forward(self, x: Tensor) -> Tensor:
        """The definition, op by op (two convolutions, concatenated, BN, 1x1, BN): what ``forward`` must equal."""
        shared = self._shared
        basis = F.conv2d(x, shared.weight(self.index), stride=self.stride, padding=shared.kernel_size // 2)
        if self.unique is not None:
            basis = torch.cat((self.unique(x), basis), dim=1)
        return self.norm(self.coeff(self.basis_norm(basis)))

    @torch.no_grad()
    def _folded_1x1(self) -> tuple[Tensor, Tensor]:
        """The eval-mode basis BN, 1x1 and output BN as one 1x1 (out, rank) and a bias, in float64."""
        s1, t1 = bn_scale_shift(self.basis_norm)
        s2, t2 = bn_scale_shift(self.norm)
        w = self.coeff.weight.detach().double().flatten(1)
        return s2[:, None] * w * s1[None, :], s2 * (w @ t1) + t2

    def fuse(self, unshare: bool = True, relu: bool = False) -> nn.Module:
        """Inference. ``unshare``: the whole chain as ONE k x k convolution with a bias (exact: the BN shifts act
        after the zero-padded convolution, so the borders agree too). Otherwise the basis convolution keeps reading
        the shared filters and both BNs fold into the 1x1. ``relu``: the ReLU that follows, fused in. The returned
        module takes ``(x, residual=None)``; a residual is added before the ReLU."""
        k, w_mix = self._shared.kernel_size, self._folded_1x1()
        basis = self.basis_weight().detach()
        dtype = basis.dtype
        if unshare:
            weight = torch.einsum("or,rikl->oikl", w_mix[0], basis.double())
            return FusedConv(weight.to(dtype), w_mix[1].to(dtype), self.stride, k // 2, relu=relu)
        coeff = FusedConv(w_mix[0][:, :, None, None].to(dtype), w_mix[1].to(dtype), relu=relu)
        return SharedBasisConvInference(self, coeff)

    def complexity(self, cx: Cx) -> Cx:
        k, start = self._shared.kernel_size, cx.shape_only()
        basis = conv_cx(start, self._shared.rank, k, self.stride, owns_weight=False)
        if self.unique is not None:
            unique = conv_cx(start, self.unique_rank, k, self.stride)
            basis = basis.add(unique.params, unique.macs, unique.acts, c=basis.c + unique.c)
        out = norm_cx(conv_cx(norm_cx(basis), self.out_chs, 1))
        return cx.then(out)

    def extra_repr(self) -> str:
        return (f"in_chs={self.in_chs}, out_chs={self.out_chs}, unique_rank={self.unique_rank}, "
                f"shared_rank={self._shared.rank}, index={self.index}, stride={self.stride}")


class SharedBasisConvInference(nn.Module):
    """``SharedBasisConv.fuse(unshare=False)``: the basis convolution on the owner's shared filters (still one tensor,
    read at each call) and this use's unique ones, then the 1x1 with both BNs folded in (``coeff``, a FusedConv).
    The two filter banks run as two convolutions whose outputs are joined, not as one over the joined banks: an
    exported graph then reads the shared tensor itself, so exporters cannot fold the join into a per-use copy and
    int8 quantizers see it as one weight (per channel), not as an activation."""

    def __init__(self, conv: SharedBasisConv, coeff: FusedConv):
        super().__init__()
        self.__dict__["_shared"] = conv.shared  # a reference: the stage's owner keeps the tensor once
        self.index, self.stride, self.padding = conv.index, conv.stride, conv.shared.kernel_size // 2
        unique = conv.unique.weight.detach().clone() if conv.unique is not None else None
        self.unique = nn.Parameter(unique, requires_grad=False) if unique is not None else None
        self.coeff = coeff

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        basis = F.conv2d(x, self._shared.weight(self.index).to(x.dtype), None, self.stride, self.padding)
        if self.unique is not None:
            unique = F.conv2d(x, self.unique.to(x.dtype), None, self.stride, self.padding)
            basis = torch.cat((unique, basis), 1)
        return self.coeff(basis, residual)


class ECA(nn.Module):
    """Efficient Channel Attention (ECA-Net): a 1-d convolution across the pooled channels gates each channel."""

    def __init__(self, kernel_size: int = 3):
        super().__init__()
        if not isinstance(kernel_size, int) or kernel_size <= 0 or kernel_size % 2 == 0:
            raise ConfigError(f"ECA kernel_size must be a positive odd integer, got {kernel_size!r}")
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        y = F.adaptive_avg_pool2d(x, 1).flatten(1).unsqueeze(1)  # (N, 1, C)
        y = torch.sigmoid(self.conv(y)).transpose(1, 2).unsqueeze(-1)  # (N, C, 1, 1)
        return x * y

    def complexity(self, cx: Cx) -> Cx:
        k = self.conv.kernel_size[0]
        return cx.add(params=k, macs=k * cx.c)
