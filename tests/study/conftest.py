import gzip
import struct

import numpy as np
import pytest

from crunet.study.grid import Recipe


def _write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="session")
def idx_data(tmp_path_factory):
    """Four IDX files of a 28x28 look-alike data set whose images show their label as a bright band."""
    root = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(1)
    for prefix, n in (("train", 384), ("t10k", 96)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 60, (n, 28, 28))
        for k in range(10):
            images[labels == k, 2 * k:2 * k + 6, 4:24] += 150
        _write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


@pytest.fixture
def tiny_recipes(idx_data):
    """A recipe of a few steps: the runner's behaviour, not accuracy, is under test."""
    settings = {"batch_size": 32, "subset": 128, "workers": 0, "warmup_epochs": 0.0}
    return {"tiny": Recipe(data=str(idx_data), epochs=2, settings=settings)}
