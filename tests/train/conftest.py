import pytest
import torch
from torch import nn

from crunet.train import TrainConfig


class TinyNet(nn.Module):
    """The model contract in miniature: fast enough for many short training runs."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1):
        super().__init__()
        self.name, self.in_chans, self.min_input_size = "tinynet", in_chans, 4
        self.pretrained_cfg = {"input_size": (in_chans, 28, 28), "mean": (0.2,), "std": (0.3,), "crop_pct": 1.0,
                               "interpolation": "bilinear"}
        self.conv = nn.Conv2d(in_chans, 8, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.2)  # draws from the global RNG: a resumed run must restore it
        self.fc = nn.Linear(8 * 16, num_classes)
        self.num_classes = num_classes

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(self.drop(nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        pass


@pytest.fixture(scope="session")
def tiny_model():
    return TinyNet


@pytest.fixture(scope="session")
def run_config(fmnist):
    """A function giving the short TinyNet run of these tests into ``out`` (2 epochs of 16 steps on the look-alike
    data, quiet); keywords replace its options. Module-scoped fixtures make their runs with it too."""
    def make(out, **changes) -> TrainConfig:
        settings = dict(model="tinynet", data=str(fmnist), out=str(out), epochs=2, batch_size=32, lr=0.1,
                        warmup_epochs=0.0, progress="none", tensorboard=False, plot=False, workers=0)
        return TrainConfig(**{**settings, **changes})
    return make


@pytest.fixture
def cfg(tmp_path, run_config):
    return run_config(tmp_path / "run")
