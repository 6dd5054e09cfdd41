"""GBTDNet: one pre-activation network for the whole GBTD family (ResNet, WRN, ResNeXt, N x 1d, CRU-Net)."""

from __future__ import annotations

from typing import Any

from torch import nn

from crunet.layers import BnAct, ResidualUnit, Stage
from crunet.models.base import ClassifierHead, StagedClassifier, init_conv_bn, make_pretrained_cfg
from crunet.models.design import NetCfg

# The released CRU-Net models: (RGB - [124, 117, 104]) * 0.0167, written as mean/std of [0, 1] images.
CRUNET_RELEASED_MEAN = (124 / 255, 117 / 255, 104 / 255)
CRUNET_RELEASED_STD = (1 / (0.0167 * 255),) * 3


def make_stem(kind: str, in_chans: int, out_chs: int, bn_eps: float) -> nn.Sequential:
    if kind == "imagenet":  # conv 7x7/2 -> BN -> ReLU -> maxpool 3x3/2
        conv = nn.Conv2d(in_chans, out_chs, 7, 2, padding=3, bias=False)
        return nn.Sequential(conv, BnAct(out_chs, bn_eps), nn.MaxPool2d(3, 2, padding=1))
    conv = nn.Conv2d(in_chans, out_chs, 3, 1, padding=1, bias=False)
    return nn.Sequential(conv, BnAct(out_chs, bn_eps))


class GBTDNet(StagedClassifier):
    def __init__(self, cfg: NetCfg, num_classes: int = 1000, in_chans: int = 3, name: str = "gbtdnet",
                 pretrained_cfg: dict[str, Any] | None = None):
        super().__init__()
        if not isinstance(in_chans, int) or in_chans <= 0:
            raise ValueError(f"in_chans must be a positive integer, got {in_chans!r}")
        self.cfg, self.name, self.in_chans = cfg, name, in_chans
        self.stem = make_stem(cfg.stem, in_chans, cfg.stem_chs, cfg.bn_eps)
        reduction, chs = cfg.stem_reduction, cfg.stem_chs
        self.feature_info: list[dict[str, Any]] = []
        stages = []
        for i, s in enumerate(cfg.stages):
            stages.append(Stage(chs, s.out_chs, s.depth, s.width, s.num_groups, s.stride, s.share_every,
                                s.extra_1x1, cfg.bn_eps))
            reduction, chs = reduction * s.stride, s.out_chs
            self.feature_info.append({"num_chs": chs, "reduction": reduction, "module": f"stages.{i}"})
        self.stages = nn.Sequential(*stages)
        self.min_input_size = reduction
        self.num_features = chs
        self.final_norm = BnAct(chs, cfg.bn_eps)
        self.head = ClassifierHead(chs, num_classes, cfg.drop_rate)
        size, crop_pct = (224, 0.875) if cfg.stem == "imagenet" else (28, 1.0)
        self.pretrained_cfg = make_pretrained_cfg(in_chans, num_classes, size, reduction, pretrained_cfg, crop_pct)
        self._init_weights(cfg.zero_init_last)

    def _init_weights(self, zero_init_last: bool) -> None:
        init_conv_bn(self)
        if zero_init_last:  # after init_conv_bn, which would re-initialize the zeroed convs
            for module in self.modules():
                if isinstance(module, ResidualUnit):
                    module.zero_init_last()
