import gc
import os

import numpy as np
import pytest
import torch

from tests.helpers import write_idx


def pytest_addoption(parser):
    parser.addoption("--device", default=os.environ.get("CRUNET_TEST_DEVICE", "cpu"),
                     help="the torch device tests/device runs on: cpu (default), cuda, cuda:N "
                          "(or set CRUNET_TEST_DEVICE)")


def pytest_configure(config):
    name = config.getoption("--device")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise pytest.UsageError(f"--device {name}: not a torch device ({err})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise pytest.UsageError(f"--device {name}: CUDA is not available in this Python "
                                    f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise pytest.UsageError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise pytest.UsageError(f"--device {name}: only cpu and cuda[:N] are supported")


@pytest.fixture(scope="session")
def device(pytestconfig) -> torch.device:
    """The device of tests/device (``--device``, or CRUNET_TEST_DEVICE; default cpu)."""
    return torch.device(pytestconfig.getoption("--device"))


@pytest.fixture(scope="module", autouse=True)
def _freeze_what_is_there():
    """Each module starts with the heap collected and frozen (``gc.freeze``): a full collection then scans only what
    the module itself made. ``train`` collects once per call (it frees the run before a process group goes), and
    scanning every object of torch, the other modules and their fixtures cost 0.25 s a call (11 s of tests/train)."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
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


@pytest.fixture(scope="session")
def trained_looking(randomize_bns):
    """A function building a registered model with trained-looking BatchNorms, in eval mode."""
    def build(name: str, in_chans: int = 3) -> torch.nn.Module:
        import crunet

        return randomize_bns(crunet.create_model(name, num_classes=10, in_chans=in_chans)).eval()
    return build


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
