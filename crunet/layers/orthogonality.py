"""The orthogonality regularizer of Deeply Shared Filter Bases, as an extra loss any model can declare.

    loss = cross_entropy + lambda * sum_g || B_g B_g^T - I ||_F^2  /  sum_g n_g^2

B_g holds the n_g shared filters of sharing group g as rows (see ``SharedBasis.orthogonality_groups``). A model
declares extra loss terms with ``extra_losses() -> dict[str, Tensor]``; the trainer adds their sum to the loss and
logs each one as ``loss_<key>``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def orthogonality_penalty(bases: Sequence[Tensor]) -> Tensor:
    """sum_g ||B_g B_g^T - I||_F^2 / sum_g n_g^2 for matrices B_g of shape (n_g, d_g)."""
    if not bases:
        raise ValueError("orthogonality_penalty needs at least one basis matrix")
    total, count = None, 0
    for b in bases:
        if b.dim() != 2:
            raise ValueError(f"a basis must be a matrix (filters as rows), got shape {tuple(b.shape)}")
        n = b.shape[0]
        with torch.autocast(b.device.type, enabled=False):  # a sum of squares near zero: keep full precision
            b = b if b.dtype in (torch.float32, torch.float64) else b.float()
            gram = b @ b.transpose(0, 1) - torch.eye(n, dtype=b.dtype, device=b.device)
            term = gram.square().sum()
        total = term if total is None else total + term
        count += n * n
    return total / count


def orthogonality_groups(model: nn.Module) -> list[Tensor]:
    """Every B_g of the sharing owners in ``model`` (modules with an ``orthogonality_groups()`` method)."""
    groups: list[Tensor] = []
    for module in model.modules():
        if module is not model and hasattr(module, "orthogonality_groups"):
            groups.extend(module.orthogonality_groups())
    return groups


class OrthogonalityLossMixin:
    """For models with shared bases: ``extra_losses()`` returns ``{"orth": lambda * penalty}``.

    The model sets ``orth_lambda`` (10 in the source); 0 disables the term, and a model without shared bases
    declares no extra loss.
    """

    orth_lambda: float = 10.0

    def extra_losses(self) -> dict[str, Tensor]:
        groups = orthogonality_groups(self)  # type: ignore[arg-type]
        if not groups or not self.orth_lambda:
            return {}
        return {"orth": self.orth_lambda * orthogonality_penalty(groups)}
