"""Image data sets on disk: class folders (ImageNet layout) and file lists (Places365-Standard layout).

A bad image (unreadable, truncated, zero bytes, not an image) is returned as ``None`` and skipped by
``skip_bad_collate``, which counts it; with ``strict=True`` it raises ``BadImageError`` instead.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class BadImageError(ValueError):
    """An image that cannot be decoded (raised only with --strict-data)."""


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image, so that a truncated file fails here and not later."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                img.load()
                return img.copy() if img.mode != "P" else img.convert("RGBA")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise BadImageError(f"bad image {path}: {err}") from err


class ImageListDataset:
    """(path, label) samples; ``dataset[(index, epoch)]`` draws the transform's randomness from (seed, epoch, index)
    so that any worker, any rank and a resumed run see the same augmentation for the same sample."""

    def __init__(self, samples: list[tuple[str, int]], classes: list[str], transform: Callable,
                 strict: bool = False, seed: int = 0):
        self.samples, self.classes, self.transform = samples, classes, transform
        self.strict, self.seed = strict, seed
        self.empty_classes: list[str] = []

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        path, label = self.samples[index]
        try:
            img = load_image(path)
        except BadImageError:
            if self.strict:
                raise
            return None
        rng = np.random.default_rng([self.seed, epoch, index])
        return self.transform(img, rng), label

    def subset(self, n: int) -> ImageListDataset:
        """The first n samples of a fixed shuffle (all classes represented), for quick runs."""
        order = np.random.default_rng(12345).permutation(len(self.samples))[:n]
        out = ImageListDataset([self.samples[i] for i in sorted(order)], self.classes, self.transform,
                               self.strict, self.seed)
        out.empty_classes = self.empty_classes
        return out


def class_folder_samples(root: str | os.PathLike, strict: bool = False) -> tuple[list, list[str], list[str]]:
    """Samples of ``root/<class>/<image>``: classes sorted by name; empty class folders kept (labels stay stable)
    and listed, or an error with ``strict``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise FileNotFoundError(f"{root} holds no class folders (expected {root}/<class>/<image files>)")
    samples, empty = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            empty.append(name)
        samples += [(str(p), label) for p in files]
    if empty and strict:
        raise ValueError(f"{root}: empty class folder(s): {', '.join(empty)}")
    if not samples:
        raise FileNotFoundError(f"{root} holds no images")
    return samples, classes, empty


def file_list_samples(list_file: str | os.PathLike, root: str | os.PathLike) -> list[tuple[str, int]]:
    """Samples of a ``path label`` list (Places365: ``/a/airfield/00000001.jpg 0``), paths relative to root."""
    samples = []
    with open(list_file) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.rsplit(None, 1)
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise ValueError(f"{list_file}:{lineno}: expected 'path label', got {line.strip()!r}")
            samples.append((os.path.join(root, parts[0].lstrip("/")), int(parts[1])))
    if not samples:
        raise ValueError(f"{list_file} lists no images")
    return samples


def read_categories(path: str | os.PathLike) -> list[str]:
    """``categories_places365.txt``: ``/a/airfield 0`` per line, in label order."""
    pairs = [line.rsplit(None, 1) for line in Path(path).read_text().splitlines() if line.strip()]
    return [name for name, _ in sorted(pairs, key=lambda p: int(p[1]))]


def skip_bad_collate(batch: list):
    """Stack the good samples; return (images, labels, number skipped)."""
    import torch

    good = [b for b in batch if b is not None]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), len(batch)
    images = torch.stack([g[0] for g in good])
    labels = torch.tensor([g[1] for g in good], dtype=torch.long)
    return images, labels, len(batch) - len(good)
