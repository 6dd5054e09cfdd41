"""Detection backbones: a crunet model's stages under torchvision's feature pyramid, for ``FasterRCNN`` / ``RetinaNet``.

    from torchvision.models.detection import FasterRCNN
    from crunet.interop.detection import backbone
    model = FasterRCNN(backbone("dsfb_resnet50_shared"), num_classes=91)

The only module of crunet that imports torchvision (at call time). The defaults line up with torchvision's default
anchor generators: ``extra_blocks="pool"`` (Faster R-CNN's) takes the last four stages of distinct strides plus a
max-pooled level, five maps; ``"p6p7"`` (RetinaNet's) takes the last three plus P6 and P7, five maps.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

from torch import nn

from crunet.errors import ConfigError

EXTRA_BLOCKS = ("pool", "p6p7", "none")
_LEVELS = {"pool": 4, "p6p7": 3, "none": 4}


class StageBody(nn.Sequential):
    """The stem and the stages of a crunet model as top-level children (``stem``, ``stage0`` ...), the layout
    torchvision's ``IntermediateLayerGetter`` reads; shared tensors live inside the stages, so sharing is kept."""

    def __init__(self, model: nn.Module):
        parts = [("stem", model.stem)] + [(f"stage{i}", stage) for i, stage in enumerate(model.stages)]
        super().__init__(OrderedDict(parts))
        self.name, self.feature_info = getattr(model, "name", type(model).__name__), model.feature_info


def default_out_indices(feature_info: list[dict[str, Any]], levels: int) -> list[int]:
    """The last stage of each stride, the last ``levels`` of them (mobilenetv2: stages 1, 2, 4, 6)."""
    last_of_stride = [i for i, f in enumerate(feature_info)
                      if i + 1 == len(feature_info) or feature_info[i + 1]["reduction"] != f["reduction"]]
    return last_of_stride[-levels:]


def backbone(name: str, weights: str | os.PathLike | None = None, out_indices: list[int] | None = None,
             out_channels: int = 256, extra_blocks: str = "pool", trainable_stages: int | None = None,
             **model_kwargs: Any) -> nn.Module:
    """A torchvision ``BackboneWithFPN`` over crunet model ``name``'s stages (``out_indices``: indices of its
    ``feature_info``), with ``out_channels`` channels per level; ``weights`` a file from ``crunet export`` /
    ``convert-mxnet`` or a training checkpoint; ``trainable_stages``: only the last N stages train (None: all)."""
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

    if extra_blocks not in EXTRA_BLOCKS:
        raise ConfigError(f"extra_blocks must be one of {', '.join(EXTRA_BLOCKS)}, got {extra_blocks!r}")
    body = StageBody(_model(name, weights, model_kwargs))
    info = body.feature_info
    take = list(out_indices) if out_indices is not None else default_out_indices(info, _LEVELS[extra_blocks])
    if not take or any(not 0 <= i < len(info) for i in take) or take != sorted(set(take)):
        raise ConfigError(f"out_indices={out_indices}: {body.name} has stages 0..{len(info) - 1}; "
                         f"give increasing indices among them")
    _freeze(body, trainable_stages)
    extra = {"pool": LastLevelMaxPool(), "p6p7": LastLevelP6P7(out_channels, out_channels), "none": None}
    fpn = BackboneWithFPN(body, {f"stage{i}": str(k) for k, i in enumerate(take)}, [info[i]["num_chs"] for i in take],
                          out_channels, extra_blocks=extra[extra_blocks])
    fpn.feature_info = [info[i] for i in take]
    return fpn


def _model(name: str, weights: str | os.PathLike | None, model_kwargs: dict[str, Any]) -> nn.Module:
    if weights is None:
        from crunet.models import create_model

        return create_model(name, **{"num_classes": 0, **model_kwargs})
    from crunet.interop.weights import load_weights

    return load_weights(weights, name, **model_kwargs).train()


def _freeze(body: StageBody, trainable_stages: int | None) -> None:
    stages = len(body) - 1
    if trainable_stages is None:
        return
    if not 0 <= trainable_stages <= stages:
        raise ConfigError(f"trainable_stages={trainable_stages}: {body.name} has {stages} stages (0..{stages})")
    for child in list(body)[: len(body) - trainable_stages]:
        child.requires_grad_(False)
