"""tests/device: the same checks on the device given by ``--device`` (cpu by default, so CI runs them on the CPU).

fp32 comparisons against the CPU run with TF32 off (CUDA's default lets cuDNN convolutions use TF32, which alone
changes results at about 1e-3); ``slow_on_cpu`` tests (torch.compile) are ``slow`` when the device is the CPU.
"""

import pytest
import torch


def pytest_configure(config):
    config.addinivalue_line("markers", "slow_on_cpu: marked slow when --device is cpu (inductor compiles C++ there)")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    if torch.device(config.getoption("--device")).type != "cpu":
        return
    for item in items:
        if item.get_closest_marker("slow_on_cpu"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _no_tf32():
    """Exact fp32 on the GPU for the whole test (restored after)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
