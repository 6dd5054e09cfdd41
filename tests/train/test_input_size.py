"""Training and evaluation see images of one size: IDX images keep their own 28x28 when the model can take it
(a CIFAR model's config says 32; training at 28 and testing upscaled to 32 once cost resnet32_cifar ~1.3 points),
and any size that differs from the data's is applied to both splits."""

from __future__ import annotations

import pytest
import torch

from crunet.data import open_split
from crunet.models import create_model
from crunet.train.config import TrainConfig
from crunet.train.inputs import data_spec


def _batch_sides(cfg: TrainConfig, model) -> tuple[int, int]:
    spec = data_spec(cfg, model)
    train, val = open_split(cfg.data, "train", spec), open_split(cfg.data, "val", spec)
    x_train, _, _ = next(train.iterate([torch.arange(8)], 0, train=True))
    x_val, _, _ = next(val.iterate([torch.arange(8)], 0, train=False))
    return x_train.shape[-1], x_val.shape[-1]


@pytest.mark.parametrize("name", ["resnet32_cifar", "dsfb_resnet32_s16u1", "crunet_small"])
def test_idx_images_keep_their_own_size_when_the_model_takes_it(fmnist, name):
    model = create_model(name, num_classes=10, in_chans=1)
    assert _batch_sides(TrainConfig(model=name, data=str(fmnist)), model) == (28, 28)


def test_an_asked_size_is_applied_to_training_and_evaluation_alike(fmnist):
    model = create_model("resnet32_cifar", num_classes=10, in_chans=1)
    assert _batch_sides(TrainConfig(model="resnet32_cifar", data=str(fmnist), img_size=32), model) == (32, 32)


def test_a_model_needing_larger_images_gets_them_in_both_splits(fmnist):
    model = create_model("resnet34", num_classes=10, in_chans=1)  # total stride 32 > 28
    train_side, val_side = _batch_sides(TrainConfig(model="resnet34", data=str(fmnist)), model)
    assert train_side == val_side == model.pretrained_cfg["input_size"][-1]
