import gzip

import numpy as np
import pytest
import torch

from crunet.data import idx
from tests.helpers import write_idx


def test_read_idx_gz_and_plain_roundtrip(tmp_path):
    a = np.random.default_rng(1).integers(0, 256, (5, 7, 3))
    write_idx(tmp_path / "a.gz", a)
    write_idx(tmp_path / "a", a, compress=False)
    np.testing.assert_array_equal(idx.read_idx(tmp_path / "a.gz"), a)
    np.testing.assert_array_equal(idx.read_idx(tmp_path / "a"), a)


def test_bad_magic_and_truncated_file_are_clear_errors(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04" + bytes(20))
    with pytest.raises(ValueError, match="not an IDX file"):
        idx.read_idx(tmp_path / "bad")
    write_idx(tmp_path / "t", np.zeros((4, 4, 4)), compress=False)
    (tmp_path / "t").write_bytes((tmp_path / "t").read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        idx.read_idx(tmp_path / "t")
    with gzip.open(tmp_path / "g.gz", "wb") as f:
        f.write(b"\x00\x00\x08\x01" + bytes(10))
    (tmp_path / "g.gz").write_bytes((tmp_path / "g.gz").read_bytes()[:12])
    with pytest.raises(ValueError, match="cannot read IDX"):
        idx.read_idx(tmp_path / "g.gz")


def test_load_split_shapes_and_labels(idx_folder):
    images, labels = idx.load_idx_split(idx_folder, "train")
    assert images.shape == (64, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.tolist() == [i % 10 for i in range(64)]
    assert idx.load_idx_split(idx_folder, "test")[0].shape == (32, 1, 28, 28)


def test_missing_data_set_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(idx, "DEFAULT_DIRS", (str(tmp_path / "nowhere"),))
    with pytest.raises(FileNotFoundError, match="get-fashion-mnist.*--data"):
        idx.find_fashion_mnist()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=f"in {tmp_path}"):
        idx.find_fashion_mnist(tmp_path)
