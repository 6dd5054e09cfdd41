"""Find the free width of a design that gives a target parameter count (how the paper sized CRU-Net)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from crunet.errors import ConfigError
from crunet.layers.complexity import count_parameters
from crunet.models.design import NetCfg
from crunet.models.preact_resnet import PreActResNet


def params_of(cfg: NetCfg, num_classes: int = 1000, in_chans: int = 3) -> int:
    """Parameter count of a design, built on the meta device (no memory, no initialization cost)."""
    with torch.device("meta"):
        return count_parameters(PreActResNet(cfg, num_classes, in_chans))


def solve_width(design: Callable[[int], NetCfg], target_params: int, multiple: int = 1, max_width: int = 1 << 14,
                num_classes: int = 1000, in_chans: int = 3) -> int:
    """The multiple of ``multiple`` whose design has the parameter count nearest ``target_params`` (ties: the
    smaller). ``design(width)`` must grow with the width; the search bisects on that."""
    if target_params <= 0 or multiple <= 0:
        raise ConfigError(f"target_params and multiple must be positive, got {target_params} and {multiple}")

    def count(steps: int) -> int:
        return params_of(design(steps * multiple), num_classes, in_chans)

    lo, hi = 1, max_width // multiple
    if count(lo) > target_params:
        return lo * multiple
    if count(hi) < target_params:
        raise ConfigError(f"no width up to {max_width} reaches {target_params:,} parameters "
                         f"({count(hi):,} at the largest); raise max_width or lower the target")
    while hi - lo > 1:  # invariant: count(lo) <= target < count(hi) or count(hi) == target
        mid = (lo + hi) // 2
        if count(mid) <= target_params:
            lo = mid
        else:
            hi = mid
    best = min((lo, hi), key=lambda s: (abs(count(s) - target_params), s))
    return best * multiple
