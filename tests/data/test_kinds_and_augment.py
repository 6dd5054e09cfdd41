"""Which data set ``--data`` holds, and which augmentations apply to it."""

import numpy as np
import pytest

from crunet.data import check_augment, detect_kind
from crunet.data.classes import class_names
from crunet.errors import ConfigError
from tests.helpers import write_idx


@pytest.fixture
def mnist_like(tmp_path):
    """IDX files whose images are digits' strokes: a few lit pixels on a black background."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 64), ("t10k", 16)):
        images = np.zeros((n, 28, 28), np.uint8)
        images[:, 6:22, 12:16] = rng.integers(100, 256, (n, 16, 4))  # a "1": 8% of the pixels
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return tmp_path


def test_mnist_is_told_from_fashion_mnist(mnist_like, fmnist):
    assert detect_kind(mnist_like) == "mnist" and class_names(mnist_like) == [str(d) for d in range(10)]
    assert detect_kind(fmnist) == "fashion-mnist" and class_names(fmnist)[0] == "T-shirt/top"


@pytest.mark.parametrize(("kind", "augment", "pad", "means"), [
    ("fashion-mnist", "auto", 2, "light"), ("mnist", "light", 0, "light"), ("mnist", "none", 0, "none"),
    ("folder", "auto", 0, "rrc"), ("places365", "paper", 0, "paper"), ("folder", "none", 0, "none"),
])
def test_each_augmentation_means_one_thing(kind, augment, pad, means):
    assert check_augment(kind, augment, pad) == means


@pytest.mark.parametrize(("kind", "augment", "pad", "names"), [
    ("fashion-mnist", "rrc", 0, "--augment rrc"), ("mnist", "paper", 0, "--augment paper"),
    ("folder", "light", 0, "--augment light"), ("folder", "auto", 4, "--pad 4"), ("mnist", "none", 2, "--pad 2"),
])
def test_an_augmentation_that_cannot_apply_is_refused_naming_it(kind, augment, pad, names):
    with pytest.raises(ConfigError, match=names) as info:
        check_augment(kind, augment, pad)
    assert "\n" not in str(info.value)
