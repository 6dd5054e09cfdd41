"""The model registry: five-line builders registered by name, created by ``create_model``."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable

from torch import nn

from crunet.errors import ConfigError

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


class UnknownModelError(ConfigError):
    """A model name that is not registered; the message lists the closest names. Still a ValueError, as
    ``torchvision.models.get_model`` raises for an unknown name."""


def register_model(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    name = builder.__name__
    if name in _BUILDERS:
        raise ValueError(f"model {name!r} is registered twice")
    _BUILDERS[name] = builder
    return builder


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, sorted."""
    return sorted(n for n in _BUILDERS if fnmatch.fnmatchcase(n, pattern))


def is_model(name: str) -> bool:
    return name in _BUILDERS


def get_builder(name: str) -> Callable[..., nn.Module]:
    if name not in _BUILDERS:
        close = difflib.get_close_matches(name, _BUILDERS, n=5, cutoff=0.4)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise UnknownModelError(f"unknown model {name!r}{hint} (crunet.list_models() lists all {len(_BUILDERS)})")
    return _BUILDERS[name]


def create_model(name: str, num_classes: int = 1000, in_chans: int = 3, **overrides) -> nn.Module:
    """Build a registered model; ``overrides`` replace fields of its design (e.g. ``bn_eps=1e-3``). The model keeps
    them as ``design_overrides``, so a weights file written from it says how to build it again."""
    model = get_builder(name)(num_classes=num_classes, in_chans=in_chans, **overrides)
    model.design_overrides = dict(overrides)
    return model
