"""Fashion-MNIST (and MNIST) in the original IDX files: big-endian header, then raw uint8 pixels or labels."""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from crunet.errors import DataError, MissingFileError

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


MAX_IDX_BYTES = 2 << 30  # 2 GiB: far above MNIST-sized sets; a header asking for more is a lie (or a bomb)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array. The header is read first and the payload read up to the
    size it declares, never more, so a gzip bomb is not inflated; anything wrong is one DataError."""
    path = Path(path)
    with _open_idx(path) as f:
        dtype, dims = _read_header(f, path)
        size = math.prod(dims) * dtype.itemsize
        data = f.read(size + 1)
    if len(data) != size:
        raise DataError(f"{path} is truncated or corrupt: header says {dims}, file has "
                        f"{'more' if len(data) > size else len(data)} bytes of data where {size} are expected")
    return np.frombuffer(data, dtype=dtype).reshape(dims)


def idx_image_size(folder: str | os.PathLike) -> int:
    """The width of the training images of the IDX data set in ``folder`` (28 for Fashion-MNIST and MNIST), read
    from the header alone."""
    path = _find_file(Path(folder), FILES["train"][0]) or Path(folder) / (FILES["train"][0] + ".gz")
    with _open_idx(path) as f:
        return _read_header(f, path)[1][-1]


@contextlib.contextmanager
def _open_idx(path: Path):
    """The file, gzipped or not; an unreadable or corrupt one is a DataError saying so."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            yield f
    except DataError:
        raise
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise DataError(f"cannot read IDX file {path}: {err or type(err).__name__} (corrupt or truncated; "
                        f"download it again)") from err


def _read_header(f, path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    magic = f.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number {magic.hex() or 'empty'})")
    dtype, ndim = np.dtype(_DTYPES[magic[2]]), magic[3]
    raw_dims = f.read(4 * ndim)
    dims = tuple(int(d) for d in np.frombuffer(raw_dims[: len(raw_dims) // 4 * 4], dtype=">u4"))
    if len(dims) != ndim:
        raise DataError(f"{path} is truncated or corrupt: its header ends early")
    size = math.prod(dims) * dtype.itemsize
    if size > MAX_IDX_BYTES:
        raise DataError(f"{path}: its header declares {dims} ({size / 2**30:.1f} GiB), more than the "
                        f"{MAX_IDX_BYTES >> 30} GiB crunet reads from an IDX file; corrupt or not IDX")
    return dtype, dims


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def looks_like_digits(folder: str | os.PathLike, n: int = 1000) -> bool:
    """The IDX data set in ``folder`` is MNIST rather than Fashion-MNIST (the file names are the same): strokes on a
    black background, under 30% of the pixels lit in its first ``n`` training images (MNIST 19%, Fashion-MNIST 50%)."""
    path = _find_file(Path(folder), FILES["train"][0]) or Path(folder) / (FILES["train"][0] + ".gz")
    with _open_idx(path) as f:
        dtype, dims = _read_header(f, path)
        pixels = np.frombuffer(f.read(min(n, dims[0]) * math.prod(dims[1:]) * dtype.itemsize), dtype=dtype)
    return bool(len(pixels)) and float((pixels != 0).mean()) < 0.3


def find_fashion_mnist(data: str | os.PathLike | None = None) -> Path:
    """The folder holding the four IDX files (Fashion-MNIST's or MNIST's): ``data`` if given, else the Debian
    package's folder."""
    candidates = [Path(data)] if data else [Path(d) for d in DEFAULT_DIRS]
    for folder in candidates:
        if all(_find_file(folder, stem) for pair in FILES.values() for stem in pair):
            return folder
    where = f"in {data}" if data else "in " + ", ".join(DEFAULT_DIRS)
    raise MissingFileError(f"Fashion-MNIST not found {where}: {INSTALL_HINT}")


def load_idx_split(folder: str | os.PathLike, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, H, W) uint8 and labels (N,) int64 of split 'train' or 'test'."""
    folder = Path(folder)
    images_stem, labels_stem = FILES[split]
    images = read_idx(_find_file(folder, images_stem) or folder / (images_stem + ".gz"))
    labels = read_idx(_find_file(folder, labels_stem) or folder / (labels_stem + ".gz"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{folder}: {split} images {images.shape} and labels {labels.shape} do not match")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
