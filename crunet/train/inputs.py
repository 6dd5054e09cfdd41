"""What the data pipeline needs from a run: the input size, normalization and crop of the model's
``pretrained_cfg`` with the run's augmentation and loader options (used by training and evaluation alike)."""

from __future__ import annotations

from torch import nn

from crunet.data import CIFAR_KINDS, IN_MEMORY_KINDS, DataSpec, detect_kind
from crunet.data.idx import find_fashion_mnist, idx_image_size
from crunet.data.sources import model_spec
from crunet.io.normalization import config_normalization
from crunet.train.config import TrainConfig


def data_spec(cfg: TrainConfig, model: nn.Module) -> DataSpec:
    size = cfg.img_size or in_memory_image_size(cfg.data, model)
    own = config_normalization(vars(cfg))  # the run's mean, std and crop_pct (a recipe's or given), as checkpoints keep
    return model_spec({**model.pretrained_cfg, **own}, model.in_chans, size, augment=cfg.augment,
                      pad=cfg.pad, crops=cfg.crops, strict=cfg.strict_data, workers=cfg.workers, seed=cfg.seed,
                      decode=cfg.decode, cifar100_labels=cfg.cifar100_labels,
                      repeat_grey=cfg.in_chans is not None)


def in_memory_image_size(data: str | None, model: nn.Module) -> int | None:
    """In-memory images (Fashion-MNIST, MNIST, CIFAR) keep their own size when the model can take it: resizing
    28x28 images to the 32x32 of a CIFAR model's config adds pixels, not information, and costs 1.3x the compute;
    resizing CIFAR to an ImageNet model's 224 costs 49x."""
    kind = detect_kind(data)
    if kind not in IN_MEMORY_KINDS:
        return None
    side = 32 if kind in CIFAR_KINDS else idx_image_size(find_fashion_mnist(data))
    return side if side >= model.min_input_size else None
