"""Distillation (``--teacher``): the loss against a hand computation, the teacher's own normalization, exact resume
with a teacher, and the one-line refusals of a teacher that cannot teach this student."""

import csv
import json
import os
import signal

import pytest
import torch
import torch.nn.functional as F

import crunet
from crunet.errors import ConfigError, FileFormatError, MissingFileError
from crunet.train import TrainConfig, TrainingInterrupted, load_checkpoint, save_checkpoint, train
from crunet.train.distill import Teacher, kd_loss, load_teacher
from crunet.train.steps import _forward_backward

TINY_RESNET = {"depths": [1, 1, 1], "widths": [4, 8, 8]}  # resnet32_cifar's design, a few thousand weights


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory, run_config):
    """A registered model (a tiny resnet32_cifar) trained for 2 steps: a checkpoint ``--teacher`` can read."""
    out = tmp_path_factory.mktemp("teacher") / "run"
    train(run_config(out, model="resnet32_cifar", model_kwargs=TINY_RESNET, epochs=1, subset=64))
    return out / "last.pt"


def test_kd_loss_is_the_tempered_kl_times_t_squared():
    torch.manual_seed(0)
    s, t, temp = torch.randn(5, 7), torch.randn(5, 7), 3.0
    p_t = torch.exp(t / temp) / torch.exp(t / temp).sum(1, keepdim=True)
    p_s = torch.exp(s / temp) / torch.exp(s / temp).sum(1, keepdim=True)
    by_hand = (p_t * (p_t.log() - p_s.log())).sum() / 5 * temp**2
    assert torch.allclose(kd_loss(s, t, temp), by_hand, atol=1e-6)
    assert kd_loss(t, t, temp).abs() < 1e-6


def test_the_step_minimizes_the_weighted_mix_and_logs_the_soft_term(tiny_model):
    torch.manual_seed(0)
    student, frozen = tiny_model(), tiny_model()
    x, y = torch.randn(6, 1, 28, 28), torch.arange(6) % 10
    cfg = TrainConfig(kd_temperature=2.0, kd_weight=0.3, label_smoothing=0.1, channels_last=False)
    student.eval()  # dropout off: the hand computation below sees the same function
    stats, bad = _forward_backward(student, [(x, y)], cfg, _single(), None, 0, Teacher(frozen))
    got = [p.grad.clone() for p in student.parameters()]
    student.zero_grad()
    logits = student(x)
    label = F.cross_entropy(logits, y, label_smoothing=0.1)
    soft = kd_loss(logits, frozen.eval()(x), 2.0)
    (0.7 * label + 0.3 * soft).backward()
    assert bad is None
    for mine, want in zip(got, (p.grad for p in student.parameters()), strict=True):
        assert torch.allclose(mine, want, atol=1e-6)
    assert stats["loss_kd"] == pytest.approx(0.3 * soft.item() * 6, rel=1e-5)
    assert stats["loss"] == pytest.approx(label.item() * 6, rel=1e-5)
    assert not any(p.grad is not None for p in frozen.parameters())


def _single():
    from crunet.train.steps import SINGLE

    return SINGLE


def test_a_teacher_of_another_normalization_sees_its_own(teacher_ckpt):
    ref = load_teacher(str(teacher_ckpt), 10, 1, (0.4733666666666667,), (0.3,)).model  # the teacher's own mean
    own_mean, own_std = tuple(ref.pretrained_cfg["mean"]), tuple(ref.pretrained_cfg["std"])
    raw = torch.rand(4, 1, 28, 28)
    as_teacher = (raw - own_mean[0]) / own_std[0]
    student_mean, student_std = (0.2,), (0.5,)
    teacher = load_teacher(str(teacher_ckpt), 10, 1, student_mean, student_std)
    assert teacher.scale is not None
    assert torch.allclose(teacher((raw - 0.2) / 0.5), ref.eval()(as_teacher), atol=1e-5)
    same = load_teacher(str(teacher_ckpt), 10, 1, own_mean, own_std)
    assert same.scale is None  # nothing to re-normalize


def test_a_safetensors_teacher_gives_the_checkpoints_logits(teacher_ckpt, tmp_path):
    from crunet.interop.weights import load_weights, save_weights

    model = load_weights(teacher_ckpt)
    path = save_weights(model, tmp_path / "teacher.safetensors")
    mean, std = tuple(model.pretrained_cfg["mean"]), tuple(model.pretrained_cfg["std"])
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(load_teacher(str(path), 10, 1, mean, std)(x), model(x))
    renamed = path.rename(tmp_path / "teacher.weights")  # told by its bytes, as crunet export and predict tell it
    assert torch.equal(load_teacher(str(renamed), 10, 1, mean, std)(x), model(x))


def test_a_teacher_exported_to_safetensors_keeps_its_runs_normalization(tmp_path):
    from crunet.cli.main import main

    model = crunet.create_model("resnet32_cifar", num_classes=10, in_chans=1, **TINY_RESNET)
    config = TrainConfig(model="resnet32_cifar", model_kwargs=TINY_RESNET, mean=[0.3], std=[0.6]).to_dict()
    save_checkpoint({"config": config, "model_name": "resnet32_cifar", "num_classes": 10, "in_chans": 1,
                     "model": model.state_dict(), "ema": {}}, tmp_path / "best.pt")
    out = tmp_path / "teacher.safetensors"
    export = ["export", "--checkpoint", str(tmp_path / "best.pt"), "--format", "safetensors", "--out", str(out)]
    assert main(export) == 0
    from_checkpoint, from_file = (load_teacher(str(p), 10, 1, (0.2,), (0.5,)) for p in (tmp_path / "best.pt", out))
    assert torch.allclose(from_checkpoint.scale, torch.tensor(0.5 / 0.6))  # the run's std, not the model's
    assert torch.equal(from_file.scale, from_checkpoint.scale) and torch.equal(from_file.shift, from_checkpoint.shift)
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(from_file(x), from_checkpoint(x))


def test_resume_with_a_teacher_and_ema_is_exact_and_logs_both_terms(run_config, tiny_model, teacher_ckpt, tmp_path):
    settings = dict(teacher=str(teacher_ckpt), kd_temperature=2.0, kd_weight=0.5, subset=128, ema_decay=0.9)
    torch.manual_seed(1)
    start = tiny_model().state_dict()
    whole = tiny_model()
    whole.load_state_dict(start)
    train(run_config(tmp_path / "whole", **settings), whole)

    class Signalled(tiny_model):
        calls = 0

        def forward(self, x):
            if self.training:
                Signalled.calls += 1
                if Signalled.calls == 6:  # inside step 6 of 8: the run stops after it, mid-epoch
                    os.kill(os.getpid(), signal.SIGUSR1)
            return super().forward(x)

    cut = Signalled()
    cut.load_state_dict(start)
    with pytest.raises(TrainingInterrupted):
        train(run_config(tmp_path / "cut", **settings), cut)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["step"] == 6
    train(run_config(tmp_path / "cut", resume="auto", **settings), tiny_model())
    ours, theirs = load_checkpoint(tmp_path / "cut" / "last.pt"), load_checkpoint(tmp_path / "whole" / "last.pt")
    assert ours["step"] == theirs["step"] == 8
    for part in ("model", "ema"):  # the EMA follows the student only, and resumes with it
        for name, value in theirs[part].items():
            assert torch.equal(ours[part][name], value), f"{part} {name}"
    rows = list(csv.DictReader(open(tmp_path / "whole" / "metrics.csv")))
    assert all(float(r["loss_kd"]) > 0 and float(r["train_loss"]) > 0 for r in rows)
    assert json.load(open(tmp_path / "whole" / "config.json"))["teacher"] == str(teacher_ckpt)


def test_a_teacher_of_other_classes_is_refused_before_any_record(run_config, tiny_model, teacher_ckpt, tmp_path):
    state = load_checkpoint(teacher_ckpt)
    five = crunet.create_model("resnet32_cifar", num_classes=5, in_chans=1, **TINY_RESNET)
    save_checkpoint({**state, "num_classes": 5, "model": five.state_dict()}, tmp_path / "five.pt")
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"predicts 5 classes but the data has 10.*same classes"):
        train(run_config(out, teacher=str(tmp_path / "five.pt")), tiny_model())
    assert not (out / "config.json").exists() and not (out / "metrics.csv").exists()


def test_a_missing_or_foreign_teacher_is_one_line(run_config, tiny_model, tmp_path):
    with pytest.raises(MissingFileError, match="--teacher .*nope.pt does not exist"):
        train(run_config(tmp_path / "a", teacher=str(tmp_path / "nope.pt")), tiny_model())
    with pytest.raises(MissingFileError, match="does not exist"):
        load_teacher(str(tmp_path / "nope.pt"), 10, 1, (0.5,), (0.5,))
    (tmp_path / "notes.txt").write_text("not a network")
    with pytest.raises(FileFormatError, match="not a crunet training checkpoint|corrupt"):
        train(run_config(tmp_path / "b", teacher=str(tmp_path / "notes.txt")), tiny_model())
    with pytest.raises(ConfigError, match="--kd-temperature must be a number > 0"):
        train(run_config(tmp_path / "c", kd_temperature=0.0), tiny_model())
