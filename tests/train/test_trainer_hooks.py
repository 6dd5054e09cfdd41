"""The trainer features the study relies on: design overrides, a validation split held out of the training set,
and the gradient flow through shared tensors."""

import csv

import pytest
import torch

from crunet.data.tensor_data import TensorLoader
from crunet.train.config import TrainConfig
from crunet.train.shared_grads import SharedGradProbe, orthogonality_of, shared_parameters
from crunet.train.trainer import train


def _loader(n: int, pad: int = 0, flip: bool = False) -> TensorLoader:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    return TensorLoader(images, torch.arange(n) % 10, (0.5,), (0.5,), pad=pad, flip=flip)


def test_held_out_images_leave_the_training_set_and_are_the_same_in_every_run():
    train_set, evaluation = _loader(100, pad=2, flip=True), _loader(10)
    rest, held = train_set.hold_out(30, evaluation)
    ids = lambda loader: set(loader.images[:, 0, 0, 0].tolist())  # noqa: E731
    assert len(held) == 30 and len(rest) == 70
    assert not ids(rest) & ids(held) and ids(rest) | ids(held) == set(range(100))
    assert (held.pad, held.flip) == (0, False) and (rest.pad, rest.flip) == (2, True)  # held-out: no augmentation
    assert ids(_loader(100).hold_out(30, evaluation)[1]) == ids(held)
    with pytest.raises(ValueError, match="--holdout 100: the training set has 100 images"):
        train_set.hold_out(100, evaluation)


def test_parts_of_a_named_data_set_keep_every_class_it_names():
    """CIFAR's loaders carry the data set's class names: a subset or held-out part that lacks the last classes
    still builds the model for all of them (num_classes_of), and keeps the notes on the files."""
    from crunet.data.sources import num_classes_of

    named = _loader(100)
    named.classes, named.notes = [f"c{i}" for i in range(12)], ["a note"]
    rest, held = named.hold_out(30, _loader(10))
    for part in (rest, held, named.subset(5), rest.subset(3)):
        assert part.classes == named.classes and part.notes == ["a note"]
        assert num_classes_of(part) == 12  # the labels alone say at most 10

def test_shared_parameters_are_the_factors_and_bases():
    from crunet.models import create_model

    cru = create_model("crunet_small", num_classes=10, in_chans=1)
    assert sorted(shared_parameters(cru)) == ["stages.1.factors.0.reduce", "stages.1.factors.0.spatial",
                                              "stages.2.factors.0.reduce", "stages.2.factors.0.spatial"]
    dsfb = create_model("dsfb_resnet32_s16u1", num_classes=10, in_chans=1)
    assert len(shared_parameters(dsfb)) == 3
    assert not shared_parameters(create_model("preresnext_small", num_classes=10, in_chans=1))
    assert orthogonality_of(cru) is None and orthogonality_of(dsfb) > 0
    dsfb(torch.randn(2, 1, 28, 28)).sum().backward()
    norms = SharedGradProbe(dsfb)()
    assert set(norms) == {f"grad_{n}" for n in shared_parameters(dsfb)} and all(v > 0 for v in norms.values())


@pytest.mark.slow
def test_run_with_overrides_holdout_and_gradient_log(tmp_path, fmnist):
    cfg = TrainConfig(model="dsfb_resnet32_s16u1", model_kwargs={"orth_lambda": 0.0}, data=str(fmnist),
                      out=str(tmp_path / "run"), epochs=2, batch_size=32, subset=160, holdout=64, workers=0,
                      progress="none", tensorboard=False, plot=False, log_shared_grads=True)
    summary = train(cfg)
    assert summary["final_val"]["count"] == 64  # validated on the held-out images, not the 96 test images
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    grads = [c for c in rows[0] if c.startswith("grad_")]
    assert len(grads) == 3 and all(float(r[c]) > 0 for r in rows for c in grads)
    assert "loss_orth" not in rows[0] and float(rows[-1]["orth_penalty"]) > 0  # off in the loss, still measured
