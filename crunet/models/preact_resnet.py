"""PreActResNet: one pre-activation network for the whole GBTD family of residual units (ResNet, Wide ResNet,
ResNeXt, N x 1d, CRU-Net), built from a ``NetCfg``. Its zoo is ``crunet.py`` (full size) and ``small.py`` (small
images); the class has a file of its own because code outside the zoo builds it from a design (the width solver,
``crunet.gbtd``'s conversions), and a zoo file is imported only by ``models/__init__.py``."""

from __future__ import annotations

from typing import Any

from crunet.layers import BnAct, PreActStem, ResidualUnit, Stage
from crunet.models.base import StagedClassifier
from crunet.models.design import NetCfg


class PreActResNet(StagedClassifier):
    def __init__(self, cfg: NetCfg, num_classes: int = 1000, in_chans: int = 3, name: str = "preact_resnet",
                 pretrained_cfg: dict[str, Any] | None = None):
        super().__init__(name, in_chans)
        self.cfg = cfg
        stem = PreActStem(cfg.stem, in_chans, cfg.stem_chs, cfg.bn_eps)
        stages, chs = [], cfg.stem_chs
        for s in cfg.stages:
            stage = Stage(chs, s.out_chs, s.depth, s.width, s.num_groups, s.stride, s.share_every, s.extra_1x1,
                          cfg.bn_eps)
            stages.append((stage, s.out_chs, s.stride))
            chs = s.out_chs
        size, crop_pct = (224, 0.875) if cfg.stem == "imagenet" else (28, 1.0)
        self.assemble(stem, cfg.stem_reduction, stages, BnAct(chs, cfg.bn_eps), num_classes, cfg.drop_rate, size,
                      {"crop_pct": crop_pct, **(pretrained_cfg or {})})
        if cfg.zero_init_last:  # after init_conv_bn, which would re-initialize the zeroed convs
            for module in self.modules():
                if isinstance(module, ResidualUnit):
                    module.zero_init_last()
