import pytest

from crunet.study.grid import Recipe


@pytest.fixture
def tiny_recipes(fmnist):
    """A recipe of a few steps on the Fashion-MNIST look-alike: the runner's behaviour, not accuracy, is under test."""
    settings = {"batch_size": 32, "subset": 128, "workers": 0, "warmup_epochs": 0.0}
    return {"tiny": Recipe(data=str(fmnist), epochs=2, settings=settings)}
