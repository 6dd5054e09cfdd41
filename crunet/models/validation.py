"""Checks of design fields and keyword overrides, shared by every model family: each failure is one ValueError (or
TypeError for an unknown option) that names the field and the value."""

from __future__ import annotations

from dataclasses import fields, is_dataclass, replace
from typing import Any

from crunet.errors import ConfigError, UnknownOptionError


def check_int(owner: str, field: str, value: Any, minimum: int = 1) -> None:
    """``value`` is an integer (not a bool) of at least ``minimum`` (1: positive, 0: non-negative)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        kind = "a positive" if minimum > 0 else "a non-negative"
        raise ConfigError(f"{owner}.{field} must be {kind} integer, got {value!r}")


def check_positive(owner: str, **values: Any) -> None:
    for field, value in values.items():
        check_int(owner, field, value, 1)


def check_choice(owner: str, field: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{owner}.{field} must be one of {choices}, got {value!r}")


def check_common(owner: str, bn_eps: float, drop_rate: float, orth_lambda: float | None = None) -> None:
    """The fields every family has: BN eps in (0, 1), dropout in [0, 1), and the orthogonality weight (>= 0)."""
    if not isinstance(bn_eps, (int, float)) or not 0 < bn_eps < 1:
        raise ConfigError(f"{owner}.bn_eps must be in (0, 1), got {bn_eps!r}")
    if not isinstance(drop_rate, (int, float)) or not 0 <= drop_rate < 1:
        raise ConfigError(f"{owner}.drop_rate must be in [0, 1), got {drop_rate!r}")
    if orth_lambda is not None and (not isinstance(orth_lambda, (int, float)) or orth_lambda < 0):
        raise ConfigError(f"{owner}.orth_lambda must be a non-negative number, got {orth_lambda!r}")


def check_in_chans(in_chans: Any) -> int:
    if not isinstance(in_chans, int) or isinstance(in_chans, bool) or in_chans <= 0:
        raise ConfigError(f"in_chans must be a positive integer, got {in_chans!r}")
    return in_chans


def field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def apply_overrides(cfg: Any, overrides: dict[str, Any], name: str) -> Any:
    """A copy of the frozen design ``cfg`` with some fields replaced; unknown names are a TypeError listing the
    valid ones."""
    valid = field_names(type(cfg))
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise UnknownOptionError(f"{name}: unknown option(s) {', '.join(unknown)}; valid options: {', '.join(valid)}")
    return replace(cfg, **{key: like(getattr(cfg, key), value) for key, value in overrides.items()})


def like(current: Any, value: Any) -> Any:
    """``value`` read back from a saved config (JSON lists, dicts) in the shape of the design field it replaces
    (tuples, design dataclasses such as ``StageCfg``), so a run resumes and a checkpoint rebuilds with its overrides."""
    if is_dataclass(current) and isinstance(value, dict):
        return type(current)(**{key: like(getattr(current, key, None), v) for key, v in value.items()})
    if isinstance(current, tuple) and isinstance(value, (list, tuple)):
        return tuple(like(current[min(i, len(current) - 1)] if current else None, v) for i, v in enumerate(value))
    return value
