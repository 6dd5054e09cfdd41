"""Data: readers (IDX, CIFAR, class folders, file lists), transforms (paper augmentation, HLS noise, crops),
samplers."""

from crunet.data.sampler import StepSampler, eval_shard
from crunet.data.sources import (
    AUGMENTS,
    CIFAR_KINDS,
    DECODES,
    IDX_KINDS,
    IN_MEMORY_KINDS,
    DataSpec,
    check_augment,
    check_labels,
    detect_kind,
    num_classes_of,
    open_split,
)

__all__ = ["AUGMENTS", "CIFAR_KINDS", "DECODES", "IDX_KINDS", "IN_MEMORY_KINDS", "DataSpec", "StepSampler",
           "check_augment", "check_labels", "detect_kind", "eval_shard", "num_classes_of", "open_split"]
