"""Size and cost of registered models, computed on the meta device (no memory, no initialization)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from crunet.layers.complexity import complexity, count_parameters
from crunet.models import create_model

BYTES_PER_MIB = 1 << 20


@dataclass(frozen=True)
class ModelInfo:
    name: str
    params: int
    macs: int
    acts: int
    input_size: tuple[int, int, int]
    bn_stats: int  # BatchNorm running mean and variance: stored in a checkpoint, not trained

    @property
    def mib(self) -> float:
        """Float32 parameters in MiB, the paper's "model size"."""
        return self.params * 4 / BYTES_PER_MIB

    @property
    def checkpoint_mib(self) -> float:
        """Float32 parameters and BN statistics in MiB: what a checkpoint file holds."""
        return (self.params + self.bn_stats) * 4 / BYTES_PER_MIB


@functools.cache  # a registered name builds one design: the same arguments give the same (frozen) ModelInfo
def model_info(name: str, num_classes: int = 1000, in_chans: int = 3, image_size: int | None = None) -> ModelInfo:
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, in_chans=in_chans)
    size = image_size or model.pretrained_cfg["input_size"][-1]
    input_size = (in_chans, size, size)
    cx = complexity(model, input_size)
    bn_stats = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    return ModelInfo(name, count_parameters(model), cx["macs"], cx["acts"], input_size, bn_stats)
