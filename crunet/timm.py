"""crunet's models in timm: ``import crunet.timm`` registers every one, then ``timm.create_model("crunet56")`` works.

The only module of crunet that imports timm, and only when imported: ``import crunet`` never pays timm's import time
(timm imports torchvision), and registration does not depend on which of the two was imported first. It uses timm's
public API only: each model is a ``register_model`` entrypoint with a default config from ``generate_default_cfgs``,
built by ``build_model_with_cfg``, so ``features_only`` (``feature_cls`` "list", "dict", "hook", "getter", "fx"),
``out_indices``, ``pretrained_cfg``/``pretrained_cfg_overlay``, ``checkpoint_path`` and ``num_classes=0,
global_pool=""`` behave as they do for timm's own models. timm lists them under module "timm" (this file's name).

No config has weights (``hf_hub_id`` and ``url`` are empty): ``pretrained=True`` is refused, naming the way to load
a file (``checkpoint_path=`` or ``pretrained_cfg_overlay=dict(file=...)``). A name timm already uses for its own
model (``resnet50``, ``resnet34``, ``resnet101``) is registered as ``crunet_<name>``; timm's own is left alone.
"""

from __future__ import annotations

import functools
from typing import Any

import timm
import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from crunet.data.transforms import PAPER_MEAN, PAPER_SCALE
from crunet.models import create_model, list_models
from crunet.models._registry import UnknownModelError

__all__ = ["crunet_name", "default_cfgs", "registered_names", "timm_name"]

_PREFIX = "crunet_"
_NO_WEIGHTS = "crunet has no hosted weights"

# The default config of each model, as its pretrained_cfg would give it (tests/interop/ecosystem checks each against
# the built model): a table, because building all of them to read their configs would add seconds to the import.
_COMMON = {"num_classes": 1000, "interpolation": "bilinear", "first_conv": "stem.0", "classifier": "head.fc",
           "hf_hub_id": "", "url": "", "license": "apache-2.0"}
_IMAGENET = {"input_size": (3, 224, 224), "pool_size": (7, 7), "min_input_size": (3, 32, 32), "crop_pct": 0.875,
             "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
_CRU = {**_IMAGENET, "mean": tuple(m / 255 for m in PAPER_MEAN), "std": (1 / (PAPER_SCALE * 255),) * 3,
        "paper_name": "Sharing Residual Units Through Collective Tensor Factorization in Deep Neural Networks",
        "paper_ids": "arXiv:1703.02180"}
_DSFB = {"paper_name": "Deeply Shared Filter Bases for Parameter-Efficient Convolutional Neural Networks",
         "paper_ids": "arXiv:2006.05066"}
_SMALL = {"input_size": (3, 28, 28), "pool_size": (4, 4), "min_input_size": (3, 8, 8), "crop_pct": 1.0,
          "mean": (0.286,) * 3, "std": (0.353,) * 3}
_CIFAR = {"input_size": (3, 32, 32), "pool_size": (8, 8), "min_input_size": (3, 4, 4), "crop_pct": 1.0,
          "mean": (0.4914, 0.4822, 0.4465), "std": (0.247, 0.2435, 0.2616)}
_GROUPS: list[tuple[dict[str, Any], int, tuple[str, ...]]] = [  # (config, number of feature levels, models)
    (_CRU, 4, ("crunet56", "crunet56_136x1d", "crunet116", "crunet116_wide")),
    (_SMALL, 3, ("crunet_small", "preresnet_small", "preresnext_small")),
    (_IMAGENET, 4, ("preresnet50", "preresnet101", "preresnet200", "preresnext50_32x4d", "preresnext50_136x1d",
                    "preresnext50_2x40d", "preresnext50_nx1d", "preresnext101_32x4d", "preresnext101_64x4d",
                    "prewrn50_2", "resnet34", "resnet50", "resnet101")),
    ({**_IMAGENET, **_DSFB}, 4, ("dsfb_resnet34_s48u1_double", "dsfb_resnet50_shared", "dsfb_resnet50_sharedpp",
                                 "dsfb_resnet101_shared")),
    (_IMAGENET, 7, ("mobilenetv2",)),
    ({**_IMAGENET, **_DSFB}, 7, ("dsfb_mobilenetv2_shared", "dsfb_mobilenetv2_sharedpp")),
    (_CIFAR, 3, ("resnet32_cifar", "resnet56_cifar")),
    ({**_CIFAR, **_DSFB}, 3, ("dsfb_resnet32_s8u1", "dsfb_resnet32_s16u1", "dsfb_resnet32_s16u1_double",
                              "dsfb_resnet56_s8u1", "dsfb_resnet56_s16u1", "dsfb_resnet56_s16u1_double")),
]
_TABLE = {name: (cfg, levels) for cfg, levels, names in _GROUPS for name in names}


def _described(name: str) -> tuple[dict[str, Any], int]:
    """(default config, feature levels): from the table, else read from the model built on the meta device."""
    if name in _TABLE:
        cfg, levels = _TABLE[name]
        return {**_COMMON, **cfg}, levels
    with torch.device("meta"):
        model = create_model(name)
    own = {k: v for k, v in model.pretrained_cfg.items() if k in _COMMON or k in _IMAGENET}
    size = model.min_input_size
    return {**_COMMON, **own, "min_input_size": (model.in_chans, size, size)}, len(model.feature_info)


def _timm_owns(name: str) -> bool:
    return timm.is_model(name) and not hasattr(timm.models.model_entrypoint(name), "crunet_name")


_NAMES = {name: (_PREFIX + name if _timm_owns(name) else name) for name in list_models()}
_CRUNET_NAMES = {alias: name for name, alias in _NAMES.items()}
_DESCRIBED = {name: _described(name) for name in _NAMES}

default_cfgs = generate_default_cfgs({_NAMES[name]: cfg for name, (cfg, _) in _DESCRIBED.items()})


def timm_name(name: str) -> str:
    """The name crunet's model ``name`` has in timm's registry (``crunet_<name>`` when timm has its own)."""
    if name not in _NAMES:
        raise UnknownModelError(f"{name!r} is not a crunet model (crunet.list_models() lists them)")
    return _NAMES[name]


def crunet_name(name: str) -> str:
    """The crunet name of a model registered in timm by this module."""
    if name not in _CRUNET_NAMES:
        raise UnknownModelError(f"{name!r} is not a crunet model registered in timm")
    return _CRUNET_NAMES[name]


def registered_names() -> list[str]:
    """Every name this module registered in timm, sorted."""
    return sorted(_CRUNET_NAMES)


def _has_weight_source(kwargs: dict[str, Any]) -> bool:
    overlay, cfg = kwargs.get("pretrained_cfg_overlay") or {}, kwargs.get("pretrained_cfg")
    cfg = cfg if isinstance(cfg, dict) else {}
    return any(src.get(k) for src in (overlay, cfg) for k in ("file", "state_dict", "url", "hf_hub_id"))


def _build(name: str, global_pool: str | None = None, **kwargs: Any) -> nn.Module:
    model = create_model(name, **kwargs)
    if global_pool is not None:
        model.reset_classifier(model.num_classes, global_pool=global_pool)
    return model


def _create(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    alias = _NAMES[name]
    if pretrained and not _has_weight_source(kwargs):
        raise RuntimeError(f"{alias}: {_NO_WEIGHTS}. Pass checkpoint_path=FILE (a file from crunet export or "
                           f"crunet convert-mxnet), or pretrained=True with pretrained_cfg_overlay=dict(file=FILE)")
    levels = _DESCRIBED[name][1]
    feature_cfg = {"out_indices": tuple(range(levels)), "flatten_sequential": True, **(kwargs.pop("feature_cfg", None)
                                                                                        or {})}
    return build_model_with_cfg(functools.partial(_build, name), alias, pretrained, feature_cfg=feature_cfg,
                                **kwargs)


def _entrypoint(name: str):
    def entrypoint(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return _create(name, pretrained=pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = _NAMES[name]
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"crunet's {name} (crunet.create_model({name!r}, ...)), built by timm."
    entrypoint.crunet_name = name
    return entrypoint


for _name in _NAMES:  # module-level functions, as timm's own entrypoints are (register_model adds them to __all__)
    globals()[_NAMES[_name]] = register_model(_entrypoint(_name))
