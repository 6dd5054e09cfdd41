"""Predict the classes of image files: top-k class names and probabilities, in batches, with 1 or 10 crops.

The model comes from a ``crunet train`` checkpoint (its weights, its input size and normalization, and the class
names of the data it was trained on) or a weights file (safetensors from ``crunet export``: the same, which it keeps;
from ``convert-mxnet``: the model's own ``pretrained_cfg``). Images are decoded in DataLoader workers with the
evaluation transform of ``crunet eval`` (short side to ``size / crop_pct``, centre crop or ten crops); an image that
cannot be decoded is skipped and reported, never fatal. The ``crunet predict`` command is a thin shell over
``load_predictor``, ``find_images``, ``predict`` and ``write_predictions``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from crunet.data.folders import IMAGE_EXTENSIONS, BadImageError, load_image
from crunet.data.sources import eval_transform, model_spec
from crunet.data.transforms import EvalCrops
from crunet.errors import ConfigError, DataError, MissingFileError
from crunet.interop.weights import Weights, read_weights


@dataclass
class Predictor:
    """A model in eval mode, its evaluation transform and its class names (label order)."""

    model: nn.Module
    transform: EvalCrops
    classes: list[str]
    source: str = ""
    info: dict = field(default_factory=dict)


@dataclass
class Prediction:
    filename: str
    classes: list[str]
    probs: list[float]


def load_predictor(source: str | os.PathLike, model_name: str | None = None, crops: int = 1,
                   resize: int | None = None, classes: list[str] | None = None, use_ema: bool = False) -> Predictor:
    """The model of a training checkpoint or a weights file, with the transform of ``crunet eval``; ``classes``
    replaces the class names (else the checkpoint's data set's, else the label numbers)."""
    weights = read_weights(source, model_name, use_ema)
    model = weights.build()
    trained_at = weights.img_size or (weights.config or {}).get("img_size")  # None: the model's own input size
    spec = model_spec({**model.pretrained_cfg, **weights.normalization}, model.in_chans, trained_at, crops=crops,
                      resize=resize)
    transform, size = eval_transform(spec), spec.size
    names = classes or _stored_classes(weights) or [str(i) for i in range(model.num_classes)]
    if len(names) != model.num_classes:
        raise DataError(f"{len(names)} class names for a model with {model.num_classes} classes "
                         f"({'--classes' if classes else source})")
    return Predictor(model, transform, list(names), str(source),
                     {"model": weights.model_name, "img_size": size, "crops": crops, "resize": transform.resize})


def _stored_classes(weights: Weights) -> list[str] | None:
    if weights.classes or weights.config is None:
        return weights.classes
    from crunet.data.classes import class_names  # a checkpoint from before class names were stored: its data set's

    return class_names(weights.config.get("data"))


def read_class_file(path: str | os.PathLike) -> list[str]:
    """One class name per line, in label order (timm's ``--class-map`` layout without indices)."""
    names = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if not names:
        raise DataError(f"class file {path} lists no names")
    return names


def find_images(paths: list[str | os.PathLike]) -> list[Path]:
    """Image files given directly, and those under folders (recursively, sorted), by extension."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.is_file():
            found.append(p)
        else:
            raise MissingFileError(f"{p} does not exist")
    if not found:
        raise MissingFileError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {', '.join(map(str, paths))}")
    return found


class _Images:
    """(index, tensor) per file, or (index, error message) when it cannot be decoded."""

    def __init__(self, files: list[Path], transform: EvalCrops):
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        try:
            return i, self.transform(load_image(self.files[i]), np.random.default_rng(0))
        except BadImageError as err:
            return i, str(err)


def _collate(batch: list):
    good = [(i, x) for i, x in batch if isinstance(x, torch.Tensor)]
    bad = [(i, x) for i, x in batch if not isinstance(x, torch.Tensor)]
    images = torch.stack([x for _, x in good]) if good else torch.empty(0)
    return [i for i, _ in good], images, bad


def batches_of(files: list[Path], batch_size: int) -> int:
    return -(-len(files) // batch_size)


@torch.no_grad()
def predict(predictor: Predictor, files: list[Path], topk: int = 5, batch_size: int = 32, workers: int = 0,
            on_batch: Callable[[int, int], None] | None = None) -> tuple[list[Prediction], list[tuple[str, str]]]:
    """Top-``topk`` predictions of each decodable file, in the order given, and (file, reason) of those skipped;
    ``on_batch(images predicted, skipped so far)`` after each batch (a progress bar). Ten crops are scored by the
    softmax averaged over the crops, as ``crunet eval`` does."""
    import torch.utils.data as tud

    if topk < 1 or batch_size < 1:
        raise ConfigError(f"topk and batch_size must be at least 1, got {topk} and {batch_size}")
    k = min(topk, len(predictor.classes))
    loader = tud.DataLoader(_Images(files, predictor.transform), batch_size=batch_size, num_workers=workers,
                            collate_fn=_collate)
    results: list[Prediction] = []
    skipped: list[tuple[str, str]] = []
    for indices, images, bad in loader:
        skipped += [(str(files[i]), reason) for i, reason in bad]
        if indices:
            results += _score(predictor, files, indices, images, k)
        if on_batch is not None:
            on_batch(len(indices), len(skipped))
    return results, skipped


def _score(predictor: Predictor, files: list[Path], indices: list[int], images: torch.Tensor,
           k: int) -> list[Prediction]:
    crops = images.shape[1] if images.dim() == 5 else 1
    logits = predictor.model(images.flatten(0, 1) if crops > 1 else images)
    probs = logits.float().softmax(1).view(len(indices), crops, -1).mean(1)
    top_p, top_i = probs.topk(k, dim=1)
    return [Prediction(str(files[i]), [predictor.classes[c] for c in ci.tolist()], [round(p, 6) for p in pi.tolist()])
            for i, ci, pi in zip(indices, top_i, top_p, strict=True)]


def write_predictions(results: list[Prediction], skipped: list[tuple[str, str]], path: str | os.PathLike,
                      fmt: str | None = None, info: dict | None = None) -> Path:
    """CSV (filename, class_1, prob_1, ... ; skipped files are not rows) or JSON (predictions, skipped, info);
    the format from ``fmt`` or the file's extension."""
    path = Path(path)
    fmt = fmt or ("json" if path.suffix.lower() == ".json" else "csv")
    if fmt not in ("csv", "json"):
        raise ConfigError(f"format must be csv or json, got {fmt!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        doc = {**(info or {}), "predictions": [{"filename": r.filename, "topk": [
            {"class": c, "prob": p} for c, p in zip(r.classes, r.probs, strict=True)]} for r in results],
               "skipped": [{"filename": f, "error": e} for f, e in skipped]}
        path.write_text(json.dumps(doc, indent=2) + "\n")
        return path
    k = max((len(r.classes) for r in results), default=0)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename"] + [c for j in range(1, k + 1) for c in (f"class_{j}", f"prob_{j}")])
        for r in results:
            writer.writerow([r.filename] + [v for pair in zip(r.classes, r.probs, strict=True) for v in pair])
    return path
