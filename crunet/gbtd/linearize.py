"""Which modules are residual units, and a context in which a module's activations are identities."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor, nn

from crunet.layers.residual_unit import ResidualUnit

_MISSING = object()


def is_unit(module: object) -> bool:
    """True for the residual units of the GBTD family (ResNet, WRN, ResNeXt, N x 1d and CRU units)."""
    return isinstance(module, ResidualUnit)


def _identity(x: Tensor) -> Tensor:
    return x


@contextmanager
def linearized(module: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every ``nn.ReLU`` inside ``module`` is the identity, so that a residual unit in eval mode
    computes its linear view (the function its GBTD factors and operator describe). Nests; restores on exit."""
    relus = [m for m in module.modules() if isinstance(m, nn.ReLU)]
    saved = [m.__dict__.get("forward", _MISSING) for m in relus]
    for m in relus:
        m.forward = _identity
    try:
        yield module
    finally:
        for m, old in zip(relus, saved, strict=True):
            if old is _MISSING:
                del m.forward
            else:
                m.forward = old
