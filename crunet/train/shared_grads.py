"""Gradient flow through shared tensors: the mechanism behind DSFB's claim that the orthogonality regularizer keeps
deep sharing trainable. The trainer logs, per epoch, the mean gradient norm of each shared tensor (CRU-Net factors,
DSFB bases) and the unweighted orthogonality penalty of the bases."""

from __future__ import annotations

import torch
from torch import nn

from crunet.layers.orthogonality import model_orthogonality
from crunet.layers.shared_basis import SharedBasis
from crunet.layers.shared_factors import SharedFactors

SHARING_OWNERS = (SharedFactors, SharedBasis)


def shared_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every parameter owned by a sharing owner, by its state_dict name."""
    found = {}
    for owner_name, module in model.named_modules():
        if isinstance(module, SHARING_OWNERS):
            for name, p in module.named_parameters():
                found[f"{owner_name}.{name}"] = p
    return found


class SharedGradProbe:
    """Called after backward: ``{"grad_<name>": norm}`` for each shared tensor that received a gradient."""

    def __init__(self, model: nn.Module):
        self.params = shared_parameters(model)

    def __bool__(self) -> bool:
        return bool(self.params)

    def __call__(self) -> dict[str, float]:
        named = [(name, p.grad) for name, p in self.params.items() if p.grad is not None]
        if not named:
            return {}
        norms = torch.stack([grad.detach().float().norm() for _, grad in named]).tolist()  # one device sync
        return {f"grad_{name}": norm for (name, _), norm in zip(named, norms, strict=True)}


@torch.no_grad()
def orthogonality_of(model: nn.Module) -> float | None:
    """The unweighted penalty of the model's shared bases in the model's form (``orth_unique``,
    ``orth_separate``), whatever its orth_lambda; None without."""
    penalty = model_orthogonality(model)
    return None if penalty is None else float(penalty)
