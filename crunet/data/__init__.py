"""Data: readers (IDX, class folders, file lists), transforms (paper augmentation, HLS noise, crops), samplers."""

from crunet.data.sampler import StepSampler, eval_shard
from crunet.data.sources import (
    AUGMENTS,
    DECODES,
    IDX_KINDS,
    DataSpec,
    check_augment,
    check_labels,
    detect_kind,
    num_classes_of,
    open_split,
)

__all__ = ["AUGMENTS", "DECODES", "IDX_KINDS", "DataSpec", "StepSampler", "check_augment", "check_labels",
           "detect_kind", "eval_shard", "num_classes_of", "open_split"]
