"""What the data pipeline needs from a run: the input size, normalization and crop of the model's
``pretrained_cfg`` with the run's augmentation and loader options (used by training and evaluation alike)."""

from __future__ import annotations

from torch import nn

from crunet.data import DataSpec
from crunet.train.config import TrainConfig


def data_spec(cfg: TrainConfig, model: nn.Module) -> DataSpec:
    pc = model.pretrained_cfg
    return DataSpec(in_chans=model.in_chans, size=cfg.img_size or pc["input_size"][-1], mean=tuple(pc["mean"]),
                    std=tuple(pc["std"]), crop_pct=pc.get("crop_pct", 0.875), augment=cfg.augment, pad=cfg.pad,
                    crops=cfg.crops, strict=cfg.strict_data,
                    workers=cfg.workers, seed=cfg.seed)
