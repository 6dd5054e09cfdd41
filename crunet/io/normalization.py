"""A run's own input normalization (``mean``, ``std``, ``crop_pct``: a recipe's or given, over the model's
``pretrained_cfg``), as a training checkpoint's config keeps it and as a weights file's ``normalization`` metadata
carries it, so that every reader of either feeds the model what it saw in training."""

from __future__ import annotations

import json
import math

KEYS = ("mean", "std", "crop_pct")


def config_normalization(config: dict | None) -> dict:
    """The keys a run set in its config; empty when it used the model's own ``pretrained_cfg``."""
    return {key: config[key] for key in KEYS if (config or {}).get(key) is not None}


def parse_normalization(text: str | None) -> dict:
    """The ``normalization`` metadata entry (JSON) read back; empty when absent. ValueError saying why, in one line,
    when it is not an object of 1 or 3 finite means, as many positive stds, and a crop_pct in (0, 1]."""
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as err:
        raise ValueError(f"is not JSON ({err})") from None
    if not isinstance(value, dict) or set(value) - set(KEYS):
        raise ValueError(f"must be a JSON object of {', '.join(KEYS)}, got {_short(text)}")
    for key, low in (("mean", -math.inf), ("std", 0.0)):
        if key in value and not _channel_values(value[key], low):
            raise ValueError(f"{key} must be 1 or 3 finite numbers{' above 0' if low == 0 else ''}, got "
                             f"{_short(json.dumps(value[key]))}")
    if "mean" in value and "std" in value and len(value["mean"]) != len(value["std"]):
        raise ValueError(f"has {len(value['mean'])} means and {len(value['std'])} stds")
    crop = value.get("crop_pct", 1.0)
    if not _number(crop) or not 0 < crop <= 1:
        raise ValueError(f"crop_pct must be a number in (0, 1], got {_short(json.dumps(crop))}")
    return value


def _channel_values(values, low: float) -> bool:
    return isinstance(values, list) and len(values) in (1, 3) and all(_number(v) and low < v < math.inf
                                                                      for v in values)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(text: str | None) -> str:
    return " ".join(str(text).split())[:80]
