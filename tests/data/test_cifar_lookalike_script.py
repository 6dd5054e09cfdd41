import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from crunet.data import detect_kind
from crunet.data.cifar import read_split
from crunet.data.cifar_files import find_cifar
from crunet.data.cifar_lookalike import write_lookalike, write_padded_idx
from crunet.data.classes import FASHION_MNIST_CLASSES
from crunet.data.idx import load_idx_split

ROOT = Path(__file__).resolve().parents[2]
FORMS = ("cifar-10-batches-py", "cifar-10-python.tar.gz", "cifar-10-batches-bin", "cifar-10-binary.tar.gz")


def _padded_test_split(fmnist):
    images, labels = load_idx_split(fmnist, "test")
    return torch.nn.functional.pad(images, (2, 2, 2, 2)), labels  # the 2-pixel zero border


def test_fashion_mnist_as_cifar10_in_four_forms_has_the_same_pixels(tmp_path, fmnist):
    assert [p.name for p in write_lookalike(fmnist, tmp_path)] == list(FORMS)
    padded, labels = _padded_test_split(fmnist)
    for form in FORMS:
        assert detect_kind(tmp_path / form) == "cifar10"
        split = read_split(find_cifar(tmp_path / form), "test")
        assert torch.equal(split.images, padded.expand(-1, 3, -1, -1)) and torch.equal(split.labels, labels)
        assert split.classes == list(FASHION_MNIST_CLASSES)
    assert np.count_nonzero(split.images[:, :, :2].numpy()) == 0
    train = read_split(find_cifar(tmp_path / FORMS[0]), "train")
    assert len(train.labels) == len(load_idx_split(fmnist, "train")[1]) == 512
    idx_images, idx_labels = load_idx_split(write_padded_idx(fmnist, tmp_path / "idx"), "test")
    assert torch.equal(idx_images, padded) and torch.equal(idx_labels, labels)


@pytest.mark.slow
def test_the_script_writes_the_four_forms_and_the_idx_files(tmp_path, fmnist):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "make-cifar-lookalike"), str(tmp_path), str(fmnist)],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert all((tmp_path / form).exists() for form in FORMS)
    padded, labels = _padded_test_split(fmnist)
    assert torch.equal(read_split(find_cifar(tmp_path / FORMS[1]), "test").images[:, 1:2], padded)
    assert torch.equal(load_idx_split(tmp_path / "idx-32x32", "test")[0], padded)
