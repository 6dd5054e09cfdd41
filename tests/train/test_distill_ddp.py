"""Distillation under torchrun: two Gloo processes with a teacher match one process with the same global batch (two
accumulated micro-batches), as the plain runs do in test_distributed.py; each rank runs its own frozen teacher."""

import csv
import json

import pytest
import torch

from crunet.train import TrainConfig, load_checkpoint, train
from tests.train.test_distributed import torchrun

TINY = {"depths": [1, 1, 1], "widths": [4, 8, 8]}


@pytest.mark.slow
def test_two_processes_with_a_teacher_match_one_process(fmnist, tmp_path):
    common = dict(model="resnet32_cifar", model_kwargs=TINY, data=str(fmnist), epochs=1, subset=64, val_subset=32,
                  augment="none", lr=0.05, warmup_epochs=0.0, progress="none", tensorboard=False, plot=False,
                  workers=0)
    train(TrainConfig(**{**common, "out": str(tmp_path / "teacher"), "batch_size": 32}))
    teacher = tmp_path / "teacher" / "last.pt"
    student = {**common, "model_kwargs": {**TINY, "widths": [4, 4, 8]}, "teacher": str(teacher), "seed": 3}
    result = torchrun("-m", "crunet", "train", "--model", "resnet32_cifar", "--model-kwargs",
                      json.dumps(student["model_kwargs"]), "--data", fmnist, "--subset", 64, "--val-subset", 32,
                      "--epochs", 1, "--batch-size", 16, "--augment", "none", "--lr", 0.05, "--warmup-epochs", 0,
                      "--teacher", teacher, "--seed", 3, "--out", tmp_path / "ddp", "--progress", "none", "--no-plot",
                      "--no-tensorboard", "--workers", 0, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(TrainConfig(**{**student, "out": str(tmp_path / "one"), "batch_size": 16, "accum": 2}))
    finally:
        torch.set_num_threads(threads)
    ddp, one = load_checkpoint(tmp_path / "ddp" / "last.pt"), load_checkpoint(tmp_path / "one" / "last.pt")
    assert ddp["step"] == one["step"] == 2
    for name, value in one["model"].items():
        if "running" not in name and "num_batches" not in name:
            torch.testing.assert_close(ddp["model"][name], value, rtol=1e-4, atol=1e-5, msg=name)
    rows = list(csv.DictReader(open(tmp_path / "ddp" / "metrics.csv")))
    assert float(rows[0]["loss_kd"]) == pytest.approx(
        float(next(csv.DictReader(open(tmp_path / "one" / "metrics.csv")))["loss_kd"]), rel=1e-3)
