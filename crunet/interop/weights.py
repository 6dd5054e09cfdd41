"""Weight files that never execute code: safetensors (written and read here) and crunet training checkpoints
(read with ``weights_only=True`` by ``crunet.io.checkpoint``).

A crunet safetensors file holds the model's ``state_dict()``, so each shared tensor once (its owner, the stage's
``SharedFactors``, is the only key), and metadata naming the model, its classes, input channels and design overrides
(``model_kwargs``, JSON), so that ``load_weights(path)`` rebuilds the model without being told which one it is; a file
exported from a training checkpoint also carries the class names, the input size it trained at and the run's own
normalization (``Weights.provenance``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path

import torch
from torch import nn

from crunet.errors import FileFormatError
from crunet.io.atomic import atomic_path
from crunet.io.checkpoint import checkpoint_weights, load_checkpoint, load_model_state, model_kwargs
from crunet.io.normalization import config_normalization, parse_normalization
from crunet.io.safetensors_file import is_safetensors

FORMAT = "crunet-weights-v1"


class WeightsError(FileFormatError):
    """A weights file that cannot be read, or does not fit the model."""


@dataclass
class Weights:
    """What a training checkpoint or a weights file holds, read once: enough to rebuild and load its model and to
    answer as the run did."""

    source: str
    model_name: str
    kwargs: dict  # create_model keywords: classes, input channels, design overrides
    state: dict[str, torch.Tensor]
    classes: list[str] | None = None  # the names of the classes it trained on, when the file knows them
    img_size: int | None = None  # the input size it trained at, when the file knows it
    config: dict | None = None  # a training checkpoint's TrainConfig; None for a weights file
    normalization: dict = field(default_factory=dict)  # the run's own mean, std, crop_pct; empty: pretrained_cfg's

    def build(self, **overrides) -> nn.Module:
        """A fresh model with these weights loaded strictly (every key, every shape), in eval mode."""
        from crunet.models import create_model

        model = create_model(self.model_name, **{**self.kwargs, **overrides})
        load_model_state(model, self.state, self.source, self.model_name)
        return model.eval()

    def provenance(self) -> dict[str, str]:
        """The metadata a weights file exported from this one keeps for ``crunet predict`` and ``--teacher``: the
        class names (JSON), the input size it trained at and the run's own normalization (JSON)."""
        found = {"classes": json.dumps(list(self.classes)) if self.classes else None,
                 "img_size": str(self.img_size) if self.img_size else None,
                 "normalization": json.dumps(self.normalization) if self.normalization else None}
        return {k: v for k, v in found.items() if v}


def save_weights(model: nn.Module, path: str | os.PathLike, extra: dict[str, str] | None = None) -> Path:
    """The model's state dict as safetensors, with the model's name, classes, channels and design overrides as
    metadata (``extra``: more, e.g. ``Weights.provenance()`` of the checkpoint it came from)."""
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT, "model": getattr(model, "name", type(model).__name__),
                "num_classes": str(getattr(model, "num_classes", "")), "in_chans": str(getattr(model, "in_chans", ""))}
    if getattr(model, "design_overrides", None):
        metadata["model_kwargs"] = json.dumps(model.design_overrides, default=_plain)
    metadata.update(extra or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return path


def _plain(value):
    """JSON for the design dataclasses (``StageCfg``) inside overrides; ``create_model`` reads them back."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"design override {value!r} cannot be written as JSON")


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a safetensors file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as err:  # SafetensorError, OSError, and whatever else a hostile header provokes
        raise WeightsError(f"{path} is not a safetensors file: {' '.join(str(err).split())[:200]}") from err


def read_weights(path: str | os.PathLike, model_name: str | None = None, use_ema: bool = False) -> Weights:
    """The model, weights and provenance of a training checkpoint or a safetensors file, read once.

    A safetensors file written by crunet names its model; any other needs ``model_name``. The classes and input
    channels come from the metadata, or else from the classifier and first-convolution shapes.
    """
    path = Path(path)
    if is_safetensors(path):
        state, meta = read_safetensors(path)
        name = model_name or meta.get("model")
        if not name:
            raise WeightsError(f"{path} does not say which model it holds: pass the model name (--model NAME)")
        kwargs = {k: int(meta[k]) for k in ("num_classes", "in_chans") if meta.get(k, "").isdigit()}
        shapes = _shape_kwargs(state)
        lies = [f"{k} {v} (the tensors say {shapes[k]})" for k, v in kwargs.items() if k in shapes and shapes[k] != v]
        if lies:  # checked before any model is built: metadata sizes are never trusted alone
            raise WeightsError(f"{path}: its metadata does not match its tensors: {'; '.join(lies)}")
        size = meta.get("img_size", "")
        return Weights(str(path), name, {**shapes, **kwargs, **_json_meta(path, meta, "model_kwargs", dict)}, state,
                       classes=_json_meta(path, meta, "classes", list) or None,
                       img_size=int(size) if size.isdigit() else None, normalization=_normalization_meta(path, meta))
    ckpt = load_checkpoint(path)
    weights = checkpoint_weights(ckpt, path, use_ema)
    if model_name and model_name != ckpt.get("model_name"):
        raise WeightsError(f"{path} holds {ckpt.get('model_name')!r}, not {model_name!r}")
    return Weights(str(path), ckpt["model_name"], model_kwargs(ckpt), weights,
                   classes=list(ckpt["classes"]) if ckpt.get("classes") else None,
                   img_size=ckpt.get("img_size") or None, config=dict(ckpt.get("config", {})),
                   normalization=config_normalization(ckpt.get("config")))


def _json_meta(path: Path, meta: dict[str, str], key: str, kind: type):
    """A JSON metadata entry of kind ``kind`` (empty when absent); a readable error when it is not one."""
    try:
        value = json.loads(meta.get(key) or "null")
    except json.JSONDecodeError as err:
        raise WeightsError(f"{path}: its {key} metadata is not JSON ({err})") from None
    if value is not None and not isinstance(value, kind):
        raise WeightsError(f"{path}: its {key} metadata is not a JSON {'object' if kind is dict else 'list'}")
    return value or kind()


def _normalization_meta(path: Path, meta: dict[str, str]) -> dict:
    try:
        return parse_normalization(meta.get("normalization"))
    except ValueError as err:
        raise WeightsError(f"{path}: its normalization metadata {err}") from None


def load_weights(path: str | os.PathLike, model_name: str | None = None, use_ema: bool = False,
                 **overrides) -> nn.Module:
    """A fresh model with the file's weights loaded strictly (every key, every shape), in eval mode."""
    return read_weights(path, model_name, use_ema).build(**overrides)


def _shape_kwargs(state: dict[str, torch.Tensor]) -> dict[str, int]:
    kwargs = {}
    if "head.fc.weight" in state:
        kwargs["num_classes"] = state["head.fc.weight"].shape[0]
    elif state:
        kwargs["num_classes"] = 0
    if "stem.0.weight" in state:
        kwargs["in_chans"] = state["stem.0.weight"].shape[1]
    return kwargs
