"""Run under torchrun by test_distributed.py: TinyNet on the look-alike data, a checkpoint every step, resuming
from ``--resume auto``; each rank writes its PID first (so that a test can kill one rank)."""

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TinyNet  # noqa: E402

from crunet.train import TrainConfig, train  # noqa: E402

data, out = sys.argv[1], Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
(out / f"pid{os.environ['RANK']}").write_text(str(os.getpid()))
torch.manual_seed(1)
cfg = TrainConfig(model="tinynet", data=data, out=str(out), epochs=2, batch_size=16, subset=256, val_subset=64,
                  lr=0.1, warmup_epochs=0.0, progress="none", tensorboard=False, plot=False, workers=0,
                  checkpoint_every="1", resume="auto")
train(cfg, TinyNet())
