import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: one thread is fastest, and immune to a busy machine's thread contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
