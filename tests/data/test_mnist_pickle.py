import gzip
import os
import pickle

import numpy as np
import pytest

from crunet.data.idx import load_idx_split
from crunet.data.mnist_pickle import convert


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 784)).astype(np.float32) / 256, rng.integers(0, 10, n).astype(np.int64)


def test_pickle_becomes_idx_files_with_the_exact_pixels(tmp_path):
    train, valid, test = _split(6, 0), _split(4, 1), _split(3, 2)
    with gzip.open(tmp_path / "mnist.pkl.gz", "wb") as f:
        pickle.dump((train, valid, test), f, protocol=2)
    convert(tmp_path / "mnist.pkl.gz", tmp_path / "out")
    images, labels = load_idx_split(tmp_path / "out", "train")
    assert images.shape == (10, 1, 28, 28)
    expected = np.concatenate([train[0], valid[0]]) * 256
    assert np.array_equal(images.numpy().reshape(10, 784), expected.astype(np.uint8))
    assert labels.tolist() == np.concatenate([train[1], valid[1]]).tolist()
    assert load_idx_split(tmp_path / "out", "test")[1].tolist() == test[1].tolist()


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo owned",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    with gzip.open(tmp_path / "evil.pkl.gz", "wb") as f:
        pickle.dump((_Exploit(), None, None), f, protocol=2)
    with pytest.raises(ValueError, match="not a plain numpy array file"):
        convert(tmp_path / "evil.pkl.gz", tmp_path / "out")
