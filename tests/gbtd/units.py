"""Residual units with random weights and BN statistics, in float64, for the GBTD tests."""

import torch
from torch import nn

from crunet.layers import ResidualUnit, SharedFactors


def randomize(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Random weights and BN statistics / affine, so that no BN is an identity and every bias is non-zero."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=generator, dtype=torch.float64))
                m.running_var.copy_(torch.rand(m.num_features, generator=generator, dtype=torch.float64) + 0.3)
                m.weight.copy_(torch.rand(m.num_features, generator=generator, dtype=torch.float64) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=generator, dtype=torch.float64))
        for p in module.parameters(recurse=True):
            if p.dim() == 4:
                p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64) / p[0].numel() ** 0.5)
    return module


def make_unit(in_chs: int, out_chs: int, groups: int, rank: int, stride: int, shared: bool, extra_1x1: bool = True,
              seed: int = 0) -> tuple[ResidualUnit, SharedFactors | None]:
    width = groups * rank
    factors = SharedFactors(out_chs, width, groups) if shared else None
    unit = ResidualUnit(in_chs, out_chs, width, groups, stride, factors=factors, extra_1x1=extra_1x1 and shared)
    generator = torch.Generator().manual_seed(seed)
    if factors is not None:
        factors.double()
        randomize(factors, generator)
    return randomize(unit.double(), generator).eval(), factors
