"""Fashion-MNIST (and MNIST) in the original IDX files: big-endian header, then raw uint8 pixels or labels."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

DEFAULT_DIRS = ("/usr/share/datasets/fashion-mnist",)
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
INSTALL_HINT = ("install it with `./scripts/get-fashion-mnist` (Debian package dataset-fashion-mnist, files in "
                "/usr/share/datasets/fashion-mnist/) or pass --data DIR, a folder holding the four IDX files "
                "(train-images-idx3-ubyte.gz, ...)")
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"),
           0x0E: np.dtype(">f8")}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array; a clear ValueError for a file that is not IDX."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"cannot read IDX file {path}: {err}") from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    dtype, ndim = np.dtype(_DTYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(data[4:header], dtype=">u4"))
    if len(dims) != ndim or len(data) - header != int(np.prod(dims)) * dtype.itemsize:
        raise ValueError(f"{path} is truncated or corrupt: header says {dims}, file has {len(data)} bytes")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def find_fashion_mnist(data: str | os.PathLike | None = None) -> Path:
    """The folder holding the four IDX files: ``data`` if given, else the Debian package's folder."""
    candidates = [Path(data)] if data else [Path(d) for d in DEFAULT_DIRS]
    for folder in candidates:
        if all(_find_file(folder, stem) for pair in FILES.values() for stem in pair):
            return folder
    where = f"in {data}" if data else "in " + ", ".join(DEFAULT_DIRS)
    raise FileNotFoundError(f"Fashion-MNIST not found {where}: {INSTALL_HINT}")


def load_idx_split(folder: str | os.PathLike, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, H, W) uint8 and labels (N,) int64 of split 'train' or 'test'."""
    folder = Path(folder)
    images_stem, labels_stem = FILES[split]
    images = read_idx(_find_file(folder, images_stem) or folder / (images_stem + ".gz"))
    labels = read_idx(_find_file(folder, labels_stem) or folder / (labels_stem + ".gz"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{folder}: {split} images {images.shape} and labels {labels.shape} do not match")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
