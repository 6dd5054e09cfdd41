"""Turning a trained ResNet (BasicBlock) into its DSFB design: shared filter bases from the kernels that share them.

Within a stage, the blocks after the first rewrite each 3x3 convolution W (out, in k k) as coefficients C (out, r)
over a basis B = [U; S] (r = u + s filters): S shared by every convolution of the group (Single: the stage's conv1s
and conv2s; Double: its conv1s, and its conv2s apart), U the convolution's own unique filters. The converter
minimizes, group by group, sum_l || (W_l - C_l B_l) L ||_F^2, where L L^T = Sigma is the covariance of the
convolution's input patches:

- ``svd``: Sigma = I, the weights' own error: S = the top s right singular vectors of the stacked kernels;
- ``data``: Sigma measured on a few hundred training images (through the original network), so that the error
  counted is the error of the convolution's output, as the low-rank compression literature does. S comes from the
  stacked kernels whitened by the group's pooled Sigma, each U from its convolution's residual under its own Sigma.

C is each convolution's least-squares fit under its Sigma. The bases are then written orthonormal (S rows, then U
rows against S and each other: the same span, so the same fit), which is what DSFB's orthogonality regularizer asks
of them: the converted network starts with that penalty at zero. Everything else (stem, every stage's first block,
the head) and each convolution's BN (the DSFB convolution's output ``norm``) is copied. The BN between basis and
coefficients starts as the identity, and with ``images`` every BN is calibrated on them (``calibrate_norms``) so that
it is that identity in train mode too.

At full rank (s + u >= in k k) the converted network computes the original to rounding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crunet.errors import ConfigError
from crunet.gbtd.affine import set_identity_bn
from crunet.gbtd.convert import calibrate_norms
from crunet.layers.dsfb_blocks import BasicBlock, BasisBlock
from crunet.layers.shared_basis import SharedBasisConv

METHODS = ("svd", "data")
RIDGE = 1e-6  # of Sigma's mean eigenvalue, added to it: directions the data never excites stay invertible


@dataclass(frozen=True)
class GroupError:
    stage: int
    bank: int  # the shared bank's index (Double: 0 for the conv1s, 1 for the conv2s)
    weight_error: float  # sum ||W - C B||^2 / sum ||W||^2 over the group's convolutions
    output_error: float  # the same, measured on the input patches (sum ||(W - C B) L||^2 / sum ||W L||^2)


def dsfb_from_resnet(source: nn.Module, target: nn.Module, method: str = "svd",
                     images: Tensor | None = None) -> list[GroupError]:
    """Write into ``target`` (a DSFB ResNet, BasicBlock) the conversion of the trained ``source`` (its unshared
    design: same depths, widths, stem and shortcuts). ``method``: svd or data (which needs ``images``, as does the
    BN calibration). Returns each sharing group's relative errors (the output error is the weight error under
    svd without images)."""
    if method not in METHODS:
        raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "data" and images is None:
        raise ConfigError("the data-aware conversion needs calibration images (a few hundred training images)")
    _check_pair(source, target)
    source = source.eval()
    covariances = _input_covariances(source, images) if images is not None else {}
    kept = {k: v for k, v in source.state_dict().items() if not _in_shared_block(target, k)}
    missing, unexpected = target.load_state_dict(kept, strict=False)
    if unexpected or any(not _in_shared_block(target, k) for k in missing):
        raise ConfigError(f"{source.name} and {target.name} differ outside the shared blocks: cannot convert")
    errors = []
    with torch.no_grad():
        for g, (old_stage, new_stage) in enumerate(zip(source.stages, target.stages, strict=True)):
            for bank, pairs in _groups(old_stage, new_stage):
                errors.append(_convert_group(g, bank, pairs, covariances, method))
    target.eval()
    if images is not None:
        calibrate_norms(target, images)
    return errors


def _check_pair(source: nn.Module, target: nn.Module) -> None:
    a, b = getattr(source, "cfg", None), getattr(target, "cfg", None)
    same = ("depths", "widths", "stem", "shortcut", "block")
    if a is None or b is None or not hasattr(b, "sharing") or any(getattr(a, f, None) != getattr(b, f) for f in same):
        raise ConfigError(f"{getattr(target, 'name', 'the target')} is not the shared design of "
                          f"{getattr(source, 'name', 'the source')} (same depths, widths, stem and shortcuts): "
                          "convert a ResNet into its own DSFB design, e.g. resnet32_cifar -> dsfb_resnet32_s16u1")
    if a.sharing != "none" or b.block != "basic" or b.sharing not in ("single", "double"):
        raise ConfigError(f"converting needs an unshared BasicBlock ResNet and a DSFB design sharing bases "
                          f"(single or double); got {source.name} ({a.sharing}) -> {target.name} ({b.sharing})")


def _in_shared_block(target: nn.Module, key: str) -> bool:
    parts = key.split(".")
    if parts[0] != "stages" or len(parts) < 4:
        return False
    stage = target.stages[int(parts[1])]
    return parts[2] == "shared" or (parts[2] == "blocks" and isinstance(stage.blocks[int(parts[3])], BasisBlock))


def _groups(old_stage, new_stage) -> Iterator[tuple[int, list[tuple[nn.Conv2d, nn.BatchNorm2d, SharedBasisConv]]]]:
    """Per shared bank: (its index, the (original conv, its BN, the DSFB convolution) pairs that use it)."""
    pairs = []
    for old, new in zip(old_stage.blocks, new_stage.blocks, strict=True):
        if isinstance(new, BasisBlock):
            pairs += [(old.conv1, old.bn1, new.conv1), (old.conv2, old.bn2, new.conv2)]
    for bank in sorted({p[2].index for p in pairs}):
        yield bank, [p for p in pairs if p[2].index == bank]


def _convert_group(stage: int, bank: int, pairs, covariances: dict, method: str) -> GroupError:
    kernels = [conv.weight.detach().double().flatten(1) for conv, _, _ in pairs]
    d = kernels[0].shape[1]
    sigmas = [covariances.get(conv, torch.eye(d, dtype=torch.float64)) if method == "data"
              else torch.eye(d, dtype=torch.float64) for conv, _, _ in pairs]
    pooled = covariance_root(sum(sigmas) / len(sigmas))
    shared_conv = pairs[0][2].shared
    s = shared_conv.rank
    whitened = torch.cat([w @ pooled for w in kernels])
    shared = _orthonormal_rows(_top_right(whitened, s) @ torch.linalg.inv(pooled))
    num = den = num_out = den_out = 0.0
    for (conv, bn, new), w, sigma in zip(pairs, kernels, sigmas, strict=True):
        root = covariance_root(sigma)
        unique = _unique_filters(w, shared, root, new.unique_rank)
        basis = torch.cat((unique, shared)) if unique is not None else shared
        coeff = _least_squares(w, basis, root @ root.T)
        if new.unique is not None:
            new.unique.weight.copy_(unique.view_as(new.unique.weight))
        new.coeff.weight.copy_(coeff[:, :, None, None])
        set_identity_bn(new.basis_norm)
        new.norm.load_state_dict(bn.state_dict())
        residual = w - coeff @ basis
        measured = covariances.get(conv, torch.eye(d, dtype=torch.float64))
        num, den = num + residual.square().sum().item(), den + w.square().sum().item()
        num_out += torch.trace(residual @ measured @ residual.T).item()
        den_out += torch.trace(w @ measured @ w.T).item()
    shared_conv.weight(bank).copy_(shared.view_as(shared_conv.weight(bank)))
    return GroupError(stage, bank, num / den, num_out / den_out)


def covariance_root(sigma: Tensor) -> Tensor:
    """A symmetric square root L of Sigma (plus a small ridge), so that ||X L|| is the error Sigma measures."""
    values, vectors = torch.linalg.eigh(sigma)
    values = values.clamp_min(0) + RIDGE * values.clamp_min(0).mean().clamp_min(1e-30)
    return (vectors * values.sqrt()) @ vectors.T


def _top_right(matrix: Tensor, k: int) -> Tensor:
    """The top ``k`` right singular vectors of ``matrix`` as rows (k, d); rows beyond its rank are completed by an
    orthonormal basis of the rest."""
    _, _, vh = torch.linalg.svd(matrix, full_matrices=True)
    return vh[:k]


def _orthonormal_rows(rows: Tensor) -> Tensor:
    """Orthonormal rows spanning what ``rows`` span (QR; signs kept positive on the diagonal)."""
    q, r = torch.linalg.qr(rows.T)
    return (q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, torch.ones(1, dtype=r.dtype))).T


def _unique_filters(w: Tensor, shared: Tensor, root: Tensor, u: int) -> Tensor | None:
    """``u`` filters orthonormal and orthogonal to ``shared``: the best addition to it under the metric ``root``
    (what the shared basis leaves of w, whitened, has its top right singular vectors in their span)."""
    if u == 0:
        return None
    d, s = w.shape[1], shared.shape[0]
    free = _top_right(torch.eye(d, dtype=w.dtype) - shared.T @ shared, d - s)  # the complement of S (d - s, d)
    sigma = root @ root.T
    residual = (w - _least_squares(w, shared, sigma) @ shared) @ root  # what S leaves, off S in the metric
    reach = (free - _least_squares(free, shared, sigma) @ shared) @ root  # what the complement adds, the same way
    q, r = torch.linalg.qr(reach.T)  # reach = r^T q^T: the residual lies in q's columns' span
    coords = torch.linalg.solve_triangular(r, _top_right(residual @ q, min(u, d - s)).T, upper=True).T
    unique = _orthonormal_rows(coords @ free)
    return torch.cat((unique, unique.new_zeros(u - len(unique), d))) if len(unique) < u else unique


def _least_squares(w: Tensor, basis: Tensor, sigma: Tensor) -> Tensor:
    """C minimizing ||(w - C basis) L||_F with L L^T = sigma: C = w Sigma B^T (B Sigma B^T)^+."""
    return (w @ sigma @ basis.T) @ torch.linalg.pinv(basis @ sigma @ basis.T, hermitian=True)


def _input_covariances(source: nn.Module, images: Tensor) -> dict[nn.Conv2d, Tensor]:
    """E[p p^T] of every BasicBlock convolution's input patches p (in k k) on ``images``, in float64."""
    convs = [c for m in source.modules() if isinstance(m, BasicBlock) for c in (m.conv1, m.conv2)]
    sums: dict[nn.Conv2d, list] = {c: [0.0, 0] for c in convs}

    def record(conv, args, _out):
        patches = F.unfold(args[0].double(), conv.kernel_size, padding=conv.padding, stride=conv.stride)
        patches = patches.transpose(1, 2).flatten(0, 1)  # (N * positions, in k k)
        sums[conv][0] = sums[conv][0] + patches.T @ patches
        sums[conv][1] += patches.shape[0]

    hooks = [c.register_forward_hook(record) for c in convs]
    try:
        with torch.no_grad():
            for batch in images.split(64):
                source(batch.to(next(source.parameters()).dtype))
    finally:
        for hook in hooks:
            hook.remove()
    return {c: total / count for c, (total, count) in sums.items()}
