"""Run by test_distributed.py under torchrun: train crunet_small, then save this rank's parameters."""

import os
import sys

import torch

import crunet
from crunet.train import TrainConfig, train

data, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
model = crunet.create_model("crunet_small", num_classes=10, in_chans=1)
cfg = TrainConfig(model="crunet_small", data=data, out=out, epochs=1, batch_size=16, subset=128, val_subset=64,
                  augment="none", lr=0.05, warmup_epochs=0.0, progress="none", tensorboard=False, plot=False,
                  workers=0)
train(cfg, model)
torch.save({k: v for k, v in model.named_parameters()}, os.path.join(out, f"rank{os.environ['RANK']}.pt"))
