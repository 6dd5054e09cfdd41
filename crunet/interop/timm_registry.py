"""Every crunet model in timm's registry, so that ``timm.create_model("crunet56", num_classes=10)`` works.

The only module of crunet that imports timm. ``import crunet`` calls ``install()``, which costs one
``find_spec("timm")``: when timm is installed, the models are registered as soon as timm itself is imported (at once
if it already is), so ``import crunet`` does not pay timm's import time. A name timm already uses for one of its own
models (``resnet50``, ``resnet34``, ``resnet101``) is registered as ``crunet_<name>``; timm's own is left alone.

The entrypoints take timm's keywords: ``pretrained`` (refused: crunet has no hosted weights; pass
``checkpoint_path=`` a file written by ``crunet export`` or ``crunet convert-mxnet`` instead), ``pretrained_cfg`` /
``pretrained_cfg_overlay`` (merged into the model's ``pretrained_cfg``), ``features_only``, ``out_indices``,
``feature_cfg``, ``global_pool="avg"``; everything else goes to ``crunet.create_model``.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from collections.abc import Callable
from typing import Any

from torch import nn

_MARK = "__crunet_model__"
_NO_WEIGHTS = "crunet has no hosted weights"


def install() -> None:
    """Register the models in timm now if timm is imported, or when it is; nothing if timm is not installed."""
    try:
        if "timm" in sys.modules:
            register_all()
        elif importlib.util.find_spec("timm") is not None:
            if not any(isinstance(f, _RegisterOnImport) for f in sys.meta_path):
                sys.meta_path.insert(0, _RegisterOnImport())
    except Exception as err:  # never let an optional integration break `import crunet`
        warnings.warn(f"crunet: could not register its models in timm: {err}", stacklevel=2)


class _RegisterOnImport:
    """A meta-path finder that lets timm import normally, then registers crunet's models in it."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname != "timm":
            return None
        sys.meta_path.remove(self)  # once; the normal finders locate timm
        spec = importlib.util.find_spec("timm")
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            exec_module = spec.loader.exec_module

            def exec_then_register(module):
                exec_module(module)
                try:
                    register_all()
                except Exception as err:
                    warnings.warn(f"crunet: could not register its models in timm: {err}", stacklevel=2)

            spec.loader.exec_module = exec_then_register
        return spec


def timm_name(name: str) -> str:
    """The name a crunet model has in timm's registry."""
    from timm.models import _registry

    entry = _registry._model_entrypoints.get(name)
    return name if entry is None or getattr(entry, _MARK, None) == name else f"crunet_{name}"


def register_all() -> list[str]:
    """Register every crunet model in timm (idempotent); returns the names used in timm."""
    from timm.models import _registry

    from crunet.models import list_models

    names = []
    for name in list_models():
        alias = timm_name(name)
        if getattr(_registry._model_entrypoints.get(alias), _MARK, None) != name:
            _registry.register_model(_entrypoint(name, alias))
        names.append(alias)
    return names


def _entrypoint(name: str, alias: str) -> Callable[..., nn.Module]:
    def entrypoint(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return create_timm_model(name, pretrained=pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = alias
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"crunet's {name} (crunet.create_model({name!r}, ...)), built the timm way."
    setattr(entrypoint, _MARK, name)
    return entrypoint


def create_timm_model(name: str, pretrained: bool = False, pretrained_cfg: Any = None,
                      pretrained_cfg_overlay: dict | None = None, features_only: bool = False,
                      out_indices: Any = None, feature_cfg: dict | None = None, global_pool: str | None = None,
                      cache_dir: Any = None, **kwargs: Any) -> nn.Module:
    """A crunet model with timm's creation keywords; ``features_only`` wraps it in timm's ``FeatureListNet``."""
    from crunet.models import create_model

    if pretrained:
        raise RuntimeError(f"{name}: {_NO_WEIGHTS}. Convert the released MXNet files (crunet convert-mxnet) or "
                           f"export a checkpoint (crunet export --format safetensors), then pass "
                           f"checkpoint_path=FILE to timm.create_model")
    if global_pool not in (None, "avg"):
        raise ValueError(f"{name}: only global_pool='avg' is supported, got {global_pool!r}")
    model = create_model(name, **kwargs)
    model.pretrained_cfg = _merged_cfg(model.pretrained_cfg, pretrained_cfg, pretrained_cfg_overlay)
    if not features_only:
        return model
    from timm.models import FeatureListNet

    cfg = {"flatten_sequential": True, **(feature_cfg or {})}
    cfg["out_indices"] = out_indices if out_indices is not None else tuple(range(len(model.feature_info)))
    cfg.pop("feature_cls", None)
    in_chans, pretrained_cfg_dict = model.in_chans, model.pretrained_cfg
    features = FeatureListNet(model, **cfg)
    features.in_chans = in_chans
    features.pretrained_cfg = {k: v for k, v in pretrained_cfg_dict.items() if k not in ("classifier", "num_classes")}
    return features


def _merged_cfg(own: dict, pretrained_cfg: Any, overlay: dict | None) -> dict:
    cfg = dict(own)
    if pretrained_cfg is not None and not isinstance(pretrained_cfg, str):  # a str is a weight tag: none exist
        cfg.update(pretrained_cfg if isinstance(pretrained_cfg, dict) else pretrained_cfg.to_dict())
        cfg = {k: v for k, v in cfg.items() if v is not None}
    cfg.update(overlay or {})
    return cfg
