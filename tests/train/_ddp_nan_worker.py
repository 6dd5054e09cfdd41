"""Run by test_distributed.py under torchrun: rank 1's loss turns NaN at its third forward pass; both ranks must stop
together with the non-finite loss error (no hang in the gradient all-reduce, no step applied on one rank only).
Each rank writes its error to a file of its own: two processes printing to one pipe can interleave their lines."""

import os
import sys
from pathlib import Path

import torch
from _ddp_common import small_run

import crunet
from crunet.train import train
from crunet.train.steps import NonFiniteLossError

data, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
model = crunet.create_model("crunet_small", num_classes=10, in_chans=1)
forward, calls = model.forward, [0]


def poisoned(x):
    calls[0] += 1
    y = forward(x)
    return y * float("nan") if os.environ["RANK"] == "1" and calls[0] == 3 else y


model.forward = poisoned
cfg = small_run(data, out, checkpoint_every="1")
try:
    train(cfg, model)
except NonFiniteLossError as err:
    rank = os.environ["RANK"]
    (Path(out).parent / f"rank{rank}-stopped.txt").write_text(f"rank {rank} stopped: {err}")
    sys.exit(3)
sys.exit(0)
