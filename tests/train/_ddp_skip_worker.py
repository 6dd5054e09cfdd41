"""Run by test_distributed.py under torchrun: every image of rank 1's third micro-batch is unreadable. Both ranks must
skip that step together (rank 0 alone stepping would leave the gradient all-reduce waiting), then finish in step."""

import os
import sys

import torch
from _ddp_common import small_run

import crunet
from crunet.data.tensor_data import TensorLoader
from crunet.train import train

data, out = sys.argv[1], sys.argv[2]
iterate = TensorLoader.iterate


def third_batch_unreadable(self, batches, epoch=0, train=True):
    for i, (x, y, bad) in enumerate(iterate(self, batches, epoch, train)):
        if train and os.environ["RANK"] == "1" and i == 2:
            x, y, bad = x[:0], y[:0], bad + len(y)
        yield x, y, bad


TensorLoader.iterate = third_batch_unreadable
torch.manual_seed(0)
model = crunet.create_model("crunet_small", num_classes=10, in_chans=1)
cfg = small_run(data, out)
train(cfg, model)
torch.save({k: v for k, v in model.named_parameters()}, os.path.join(out, f"rank{os.environ['RANK']}.pt"))
