"""The orthogonality regularizer of Deeply Shared Filter Bases, as an extra loss any model can declare.

Two forms, both from the source (ssregibility/Net_RL2). Its ImageNet and CIFAR-100 scripts (``orth_unique=False``):

    loss = cross_entropy + lambda * sum_g || S_g S_g^T - I ||_F^2  /  sum_g n_g^2

with S_g the n_g shared filters of sharing group g as rows (a Double pair together). Its CIFAR-10 script
(``include_unique_basis=True``; ``orth_unique=True``) also stacks the unique filters of every convolution using the
group (u rows each) under S_g: B_g = [S_g; U_g1; U_g2; ...], n_all rows, and with D_g = (B_g B_g^T - I)^2
elementwise takes D_g's shared rows against all columns plus each convolution's own u x u block:

    lambda * sum_g (sum D_g[:n_g, :] + sum_k sum D_g[U_gk, U_gk])  /  sum_g (n_g * n_all + sum_k u^2)

so the unique filters are pulled to unit norm and orthogonal to the shared ones (not to each other across
convolutions). Without unique filters both forms agree. Its ImageNet script trains the Shared++ nets (two kinds of
shared tensor per stage: ResNet-50's 3x3 and last 1x1, MobileNetV2's expansion and projection 1x1) with
``train_basis_double_separate`` (``orth_separate=True``): each kind averaged on its own, then the averages added,

    lambda * (sum_g ||S1_g S1_g^T - I||^2 / sum_g n1_g^2  +  sum_g ||S2_g S2_g^T - I||^2 / sum_g n2_g^2)

A model declares extra loss terms with
``extra_losses() -> dict[str, Tensor]``; the trainer adds their sum to the loss and logs each one as ``loss_<key>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from crunet.errors import ConfigError


class BasisGroup(NamedTuple):
    """One sharing group in the CIFAR-10 form: the shared filters as rows (n, d) and the unique filters of the K
    convolutions that use them (K, u, d). A bare matrix is a group without unique filters."""

    shared: Tensor
    unique: Tensor


def _group_term(group: Tensor | BasisGroup) -> tuple[Tensor, int]:
    """(sum of squares, number of entries) of one group, in full precision."""
    shared, unique = (group, None) if isinstance(group, Tensor) else group
    if shared.dim() != 2 or (unique is not None and (unique.dim() != 3 or unique.shape[2] != shared.shape[1])):
        shapes = tuple(shared.shape), None if unique is None else tuple(unique.shape)
        raise ConfigError(f"a basis must be a matrix (filters as rows) with unique filters (K, u, d), got {shapes}")
    n, eye = shared.shape[0], torch.eye
    with torch.autocast(shared.device.type, enabled=False):  # a sum of squares near zero: keep full precision
        shared = shared if shared.dtype in (torch.float32, torch.float64) else shared.float()
        if unique is None:
            gram = shared @ shared.transpose(0, 1) - eye(n, dtype=shared.dtype, device=shared.device)
            return gram.square().sum(), n * n
        k, u, _ = unique.shape
        unique = unique.to(shared.dtype)
        rows = torch.cat((shared, unique.flatten(0, 1)))
        cross = shared @ rows.transpose(0, 1) - eye(n, n + k * u, dtype=shared.dtype, device=shared.device)
        own = unique @ unique.transpose(1, 2) - eye(u, dtype=shared.dtype, device=shared.device)
        return cross.square().sum() + own.square().sum(), n * (n + k * u) + k * u * u


def orthogonality_penalty(bases: Sequence[Tensor | BasisGroup]) -> Tensor:
    """The unweighted term: sum_g ||B_g B_g^T - I||_F^2 / sum_g n_g^2 for matrices B_g (n_g, d_g), and the CIFAR-10
    form (module docstring) for a ``BasisGroup``."""
    if not bases:
        raise ConfigError("orthogonality_penalty needs at least one basis matrix")
    total, count = None, 0
    for group in bases:
        term, entries = _group_term(group)
        total = term if total is None else total + term
        count += entries
    return total / count


def orthogonality_groups(model: nn.Module, unique: bool | None = None) -> list[Tensor | BasisGroup]:
    """Every group of ``model``'s sharing owners: modules with an ``orthogonality_groups(unique)`` method, the
    outermost one answering for what it holds (a stage for its owners and their users' unique filters). ``unique``:
    the CIFAR-10 form; by default the model's ``orth_unique``."""
    return [group for groups in _answers(model, unique) for group in groups]


def orthogonality_kinds(model: nn.Module, unique: bool | None = None) -> list[list[Tensor | BasisGroup]]:
    """The groups by kind: ``kinds[i]`` holds the i-th owner of every sharing stage (the source's
    ``shared_basis_<g>_<i+1>``: ResNet-50 Shared++'s 3x3, then its last 1x1; MobileNetV2's expansion, then its
    projection)."""
    kinds: list[list[Tensor | BasisGroup]] = []
    for groups in _answers(model, unique):
        for i, group in enumerate(groups):
            if i == len(kinds):
                kinds.append([])
            kinds[i].append(group)
    return kinds


def model_orthogonality(model: nn.Module) -> Tensor | None:
    """The unweighted term in ``model``'s form: with ``orth_separate`` one average per kind of shared tensor, the
    averages added; else one average over every group (``orth_unique``: the CIFAR-10 form). None: no shared bases."""
    if getattr(model, "orth_separate", False):
        terms = [orthogonality_penalty(groups) for groups in orthogonality_kinds(model)]
        return torch.stack(terms).sum() if terms else None
    groups = orthogonality_groups(model)
    return orthogonality_penalty(groups) if groups else None


def _answers(model: nn.Module, unique: bool | None) -> list[list[Tensor | BasisGroup]]:
    """The groups of each outermost module that answers ``orthogonality_groups``, one list per module."""
    unique = bool(getattr(model, "orth_unique", False)) if unique is None else unique
    answers: list[list[Tensor | BasisGroup]] = []

    def visit(module: nn.Module) -> None:
        for child in module.children():
            if hasattr(child, "orthogonality_groups"):
                answers.append(child.orthogonality_groups(unique))
            else:
                visit(child)

    visit(model)
    return answers


class OrthogonalityLossMixin:
    """For models with shared bases: ``extra_losses()`` returns ``{"orth": lambda * penalty}``.

    The model sets ``orth_lambda`` (10 in the source; 0 disables the term), ``orth_unique`` (the CIFAR-10 form,
    which also regularizes the unique filters) and ``orth_separate`` (Shared++: one average per kind of shared
    tensor); a model without shared bases declares no extra loss.
    """

    orth_lambda: float = 10.0
    orth_unique: bool = False
    orth_separate: bool = False

    def extra_losses(self) -> dict[str, Tensor]:
        if not self.orth_lambda:
            return {}
        penalty = model_orthogonality(self)  # type: ignore[arg-type]
        return {} if penalty is None else {"orth": self.orth_lambda * penalty}
