"""Where a run's train/held-out gap comes from: BatchNorm statistics or generalization.

For a checkpoint trained with ``--holdout N`` on an IDX data set, the top-1 of its model on the held-out images in
eval mode, with batch statistics, and after re-estimating the BN statistics on un-augmented training images; and on
10,000 un-augmented training images in eval mode. If re-estimated statistics help, the running statistics do not
match what evaluation feeds the model; the gap that remains between training and held-out images is generalization.

    .venv/bin/python benchmarks/heldout_gap.py runs/study/fashion-mnist/resnet32_cifar/lr=0.2*/seed0/last.pt
"""

from __future__ import annotations

import argparse
import copy

import torch

from crunet.data import open_split
from crunet.io.checkpoint import load_model_state
from crunet.models import create_model
from crunet.train.checkpoint import load_checkpoint
from crunet.train.config import TrainConfig
from crunet.train.inputs import data_spec
from crunet.train.setup import hold_out


def top1(model, data, batches, batch_statistics: bool = False) -> float:
    if batch_statistics:  # a copy: training-mode BN would also update the model's running statistics
        model = copy.deepcopy(model)
    model.train(batch_statistics)
    correct = seen = 0
    with torch.no_grad():
        for x, y, _ in data.iterate(batches, 0, train=False):
            correct += (model(x).argmax(1) == y).sum().item()
            seen += len(y)
    return 100 * correct / seen


def recalibrate_bn(model, data, batches) -> None:
    """Running statistics re-estimated as the plain average over ``batches`` (momentum None)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for x, _, _ in data.iterate(batches, 0, train=False):
            model(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| checkpoint | held-out, eval | held-out, batch stats | held-out, BN re-estimated | train 10k, eval |")
    print("|---|---:|---:|---:|---:|")
    for path in args.checkpoints:
        state = load_checkpoint(path)
        cfg = TrainConfig.from_dict(state["config"])
        if not cfg.holdout:
            raise SystemExit(f"{path}: not trained with --holdout; nothing held out to compare with")
        model = create_model(state["model_name"], num_classes=state["num_classes"], in_chans=state["in_chans"],
                             **cfg.model_kwargs)
        load_model_state(model, state["model"], path, state["model_name"])
        spec = data_spec(cfg, model)
        train, held = hold_out(open_split(cfg.data, "train", spec), open_split(cfg.data, "val", spec), cfg.holdout)
        held_batches = list(torch.arange(len(held)).split(256))
        train_batches = list(torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:10_000]
                             .split(256))
        row = [top1(model, held, held_batches), top1(model, held, held_batches, batch_statistics=True)]
        train_top1 = top1(model, train, train_batches)
        recalibrate_bn(model, train, train_batches)
        row += [top1(model, held, held_batches), train_top1]
        print(f"| {path} | " + " | ".join(f"{v:.2f}" for v in row) + " |")


if __name__ == "__main__":
    main()
