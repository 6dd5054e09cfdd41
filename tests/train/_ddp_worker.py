"""Run by test_distributed.py under torchrun: train crunet_small (progress lines: only rank 0 may print them), then
save this rank's parameters."""

import os
import sys

import torch
from _ddp_common import small_run

import crunet
from crunet.train import train

data, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
model = crunet.create_model("crunet_small", num_classes=10, in_chans=1)
cfg = small_run(data, out, progress="lines")
train(cfg, model)
torch.save({k: v for k, v in model.named_parameters()}, os.path.join(out, f"rank{os.environ['RANK']}.pt"))
