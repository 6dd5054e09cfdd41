import gzip
import struct

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def randomize_bns():
    """A function giving every BatchNorm of a module the non-trivial statistics and affines training leaves (so a
    check that folds BNs cannot pass by folding identities); it returns the module."""
    def randomize(module: torch.nn.Module) -> torch.nn.Module:
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.3, 0.3)
        return module
    return randomize


@pytest.fixture
def trained_looking(randomize_bns):
    """A function building a registered model with trained-looking BatchNorms, in eval mode."""
    def build(name: str, in_chans: int = 3) -> torch.nn.Module:
        import crunet

        return randomize_bns(crunet.create_model(name, num_classes=10, in_chans=in_chans)).eval()
    return build


def write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="session")
def fmnist(tmp_path_factory):
    """A small Fashion-MNIST look-alike: 28x28 grey images whose brightness pattern depends on the label."""
    root = tmp_path_factory.mktemp("fmnist")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 512), ("t10k", 128)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 60, (n, 28, 28))
        for k in range(10):
            images[labels == k, 2 * k:2 * k + 6, 4:24] += 150
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root
