"""From a design to a model: apply keyword overrides to a frozen design, then build it."""

from __future__ import annotations

import dataclasses
from typing import Any

from crunet.models.design import NetCfg, field_names
from crunet.models.gbtd_net import GBTDNet


def apply_overrides(cfg: NetCfg, overrides: dict[str, Any], name: str) -> NetCfg:
    unknown = sorted(set(overrides) - set(field_names(NetCfg)))
    if unknown:
        raise TypeError(f"{name}: unknown option(s) {', '.join(unknown)}; "
                        f"valid options: {', '.join(field_names(NetCfg))}")
    return dataclasses.replace(cfg, **overrides)


def build_gbtd(name: str, cfg: NetCfg, num_classes: int = 1000, in_chans: int = 3,
               pretrained_cfg: dict[str, Any] | None = None, **overrides: Any) -> GBTDNet:
    return GBTDNet(apply_overrides(cfg, overrides, name), num_classes, in_chans, name, pretrained_cfg)
