"""A stage: a run of residual units at one resolution, and the owner of its sharing groups' factors."""

from __future__ import annotations

from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from crunet.layers.complexity import Cx, module_cx
from crunet.layers.residual_unit import ResidualUnit
from crunet.layers.shared_factors import SharedFactors


class Stage(nn.Module):
    """``depth`` units; the first changes resolution/width. With ``share_every=n`` the units share their 1x1 and
    3x3 in consecutive groups of n (units 1..n, n+1..2n, ...), each group owned by one ``SharedFactors``."""

    def __init__(self, in_chs: int, out_chs: int, depth: int, width: int, groups: int, stride: int = 1,
                 share_every: int = 0, extra_1x1: bool = True, bn_eps: float = 1e-5):
        super().__init__()
        self.grad_checkpointing = False
        self.factors = nn.ModuleList()
        if share_every:
            num_groups = -(-depth // share_every)
            self.factors.extend(SharedFactors(out_chs, width, groups) for _ in range(num_groups))
        self.units = nn.ModuleList()
        for i in range(depth):
            factors = self.factors[i // share_every] if share_every else None
            self.units.append(ResidualUnit(
                in_chs if i == 0 else out_chs, out_chs, width, groups, stride if i == 0 else 1,
                factors=factors, extra_1x1=extra_1x1 and factors is not None, bn_eps=bn_eps))

    def forward(self, x: Tensor) -> Tensor:
        return run_units(self.units, x, self.grad_checkpointing)

    def complexity(self, cx: Cx) -> Cx:
        return owners_then_units_cx(self.factors, self.units, cx)

    def fuse(self, unshare: bool = True) -> Stage:
        """This stage for inference: each unit folded by its own ``fuse``. Unshared, every unit has its own folded
        copy of its group's 3x3, so the group's ``spatial`` is dropped (its ``reduce`` stays shared)."""
        self.units = nn.ModuleList(unit.fuse(unshare) for unit in self.units)
        if unshare:
            for factors in self.factors:
                factors.spatial = None
        return self


def run_units(units: nn.ModuleList, x: Tensor, grad_checkpointing: bool) -> Tensor:
    """Apply the units in order, each under non-reentrant checkpointing (safe with shared weights and DDP) if asked."""
    for unit in units:
        if grad_checkpointing and x.requires_grad:
            x = checkpoint(unit, x, use_reentrant=False)
        else:
            x = unit(x)
    return x


def owners_then_units_cx(owners: nn.ModuleList, units: nn.ModuleList, cx: Cx) -> Cx:
    """A stage's count: the shared tensors' owners add their parameters once, then each unit counts its uses."""
    for module in (*owners, *units):
        cx = module_cx(module, cx)
    return cx
