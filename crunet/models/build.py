"""From a design to a model: apply keyword overrides to a frozen design, then build it."""

from __future__ import annotations

from typing import Any

from crunet.models.design import NetCfg, apply_overrides
from crunet.models.gbtd_net import GBTDNet


def build_gbtd(name: str, cfg: NetCfg, num_classes: int = 1000, in_chans: int = 3,
               pretrained_cfg: dict[str, Any] | None = None, **overrides: Any) -> GBTDNet:
    return GBTDNet(apply_overrides(cfg, overrides, name), num_classes, in_chans, name, pretrained_cfg)
