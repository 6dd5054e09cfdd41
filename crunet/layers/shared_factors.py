"""The factors one sharing group of Collective Residual Units owns.

In the GBTD view a bottleneck is X* = sum_r G_r x3 A3_r x4 A4_r. A Collective Residual Unit group shares the first
1x1 (all A3_r, ``reduce``) and the grouped 3x3 (all cores G_r, ``spatial``); each unit keeps its own A4. This module
is the single owner of those two tensors: units hold a plain (unregistered) reference to it, so ``state_dict()`` and
``parameters()`` see each shared tensor once and autograd sums the gradients of every use.
"""

from __future__ import annotations

import torch
from torch import nn

from crunet.errors import ConfigError
from crunet.layers.complexity import Cx


class SharedFactors(nn.Module):
    def __init__(self, in_chs: int, width: int, groups: int, kernel_size: int = 3):
        super().__init__()
        if width % groups:
            raise ConfigError(f"width={width} is not divisible by groups={groups}")
        self.in_chs, self.width, self.groups, self.kernel_size = in_chs, width, groups, kernel_size
        self.reduce = nn.Parameter(torch.empty(width, in_chs, 1, 1))
        self.spatial = nn.Parameter(torch.empty(width, width // groups, kernel_size, kernel_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for weight in (self.reduce, self.spatial):
            nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")

    def complexity(self, cx: Cx) -> Cx:
        """Only the parameters: the units that use the factors count their MACs."""
        return cx.add(params=self.reduce.numel() + self.spatial.numel())

    def extra_repr(self) -> str:
        return f"in_chs={self.in_chs}, width={self.width}, groups={self.groups}, kernel_size={self.kernel_size}"
