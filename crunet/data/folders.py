"""Image data sets on disk: class folders (ImageNet layout) and file lists (Places365-Standard layout).

A bad image (unreadable, truncated, zero bytes, not an image) is returned as ``None`` and skipped by
``skip_bad_collate``, which counts it; with ``strict=True`` it raises ``BadImageError`` instead.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from crunet.errors import DataError, MissingFileError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


MAX_PIXELS = Image.MAX_IMAGE_PIXELS  # Pillow's decompression-bomb limit (about 89 M pixels): larger images are bad


class BadImageError(DataError):
    """An image that cannot be decoded (raised only with --strict-data)."""


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image, so that a truncated file fails here and not later. Not a regular file (a
    FIFO would block, a folder, a symlink loop), more than ``MAX_PIXELS`` pixels (a decompression bomb), or
    undecodable: BadImageError."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise BadImageError(f"bad image {path}: not a regular file")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise BadImageError(f"bad image {path}: {img.width}x{img.height} pixels, more than the "
                                        f"{MAX_PIXELS:,} allowed (a decompression bomb?)")
                img.load()
                return img.copy() if img.mode != "P" else img.convert("RGBA")
    except BadImageError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning,
            MemoryError, EOFError) as err:
        raise BadImageError(f"bad image {path}: {' '.join(str(err).split()) or type(err).__name__}") from err


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
    """Samples of ``root/<class>/<image>``: classes sorted by name (hidden folders such as ``.ipynb_checkpoints``
    are not classes; hidden files are not images); empty class folders kept (labels stay stable) and listed, or an
    error with ``strict``."""
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(f"image folder {root} does not exist")
    classes = class_folders(root)
    if not classes:
        raise MissingFileError(f"{root} holds no class folders (expected {root}/<class>/<image files>)")
    samples, empty = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
                       and not any(part.startswith(".") for part in p.relative_to(root / name).parts))
        if not files:
            empty.append(name)
        samples += [(str(p), label) for p in files]
    if empty and strict:
        raise DataError(f"{root}: empty class folder(s): {', '.join(empty)}")
    if not samples:
        raise MissingFileError(f"{root} holds no images")
    return samples, classes, empty


def class_folders(root: Path) -> list[str]:
    """The class names under ``root``: its sub-folders, hidden ones left out, sorted."""
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def check_same_classes(train: list[str], val: list[str], where: str) -> None:
    """Labels are indices into the class list: train and validation must list the same classes, or every
    validation label means another class."""
    if list(train) != list(val):
        only_train, only_val = sorted(set(train) - set(val)), sorted(set(val) - set(train))
        detail = "; ".join(f"only in {split}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
                           for split, names in (("train", only_train), ("val", only_val)) if names)
        raise DataError(f"{where}: train and val class lists differ ({detail or 'same names, other order'}); "
                        f"every label would name the wrong class. Give both splits the same class folders "
                        f"(an empty folder keeps a class)")


def file_list_samples(list_file: str | os.PathLike, root: str | os.PathLike,
                      num_classes: int | None = None) -> list[tuple[str, int]]:
    """Samples of a ``path label`` list (Places365: ``/a/airfield/00000001.jpg 0``), paths relative to root.
    Labels must lie in 0..num_classes-1 (when given; else be >= 0); the first listed files must exist (a wrong
    image root is an error, not a run on nothing). Missing files further down are skipped and counted."""
    samples = []
    with open(list_file) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.rsplit(None, 1)
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise DataError(f"{list_file}:{lineno}: expected 'path label', got {line.strip()!r}")
            label = int(parts[1])
            if label < 0 or (num_classes is not None and label >= num_classes):
                bound = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
                raise DataError(f"{list_file}:{lineno}: label {label} is outside {bound}")
            samples.append((os.path.join(root, parts[0].lstrip("/")), label))
    if not samples:
        raise DataError(f"{list_file} lists no images")
    first = [p for p, _ in samples[:20]]
    if not any(os.path.exists(p) for p in first):
        raise DataError(f"{list_file}: none of the first {len(first)} listed images exists under {root} (e.g. "
                        f"{first[0]}); is the image folder right?")
    return samples


def read_categories(path: str | os.PathLike) -> list[str]:
    """``categories_places365.txt``: ``/a/airfield 0`` per line, in label order."""
    pairs = [line.rsplit(None, 1) for line in Path(path).read_text().splitlines() if line.strip()]
    if any(len(p) != 2 or not p[1].isdigit() for p in pairs) or sorted(int(p[1]) for p in pairs) != list(
            range(len(pairs))):
        raise DataError(f"{path}: expected 'name label' lines with labels 0..N-1, each once")
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
