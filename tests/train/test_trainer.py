import csv
import json
import os
import shutil
import signal

import pytest
import torch

from crunet.train import CheckpointError, NonFiniteLossError, TrainConfig, TrainingInterrupted, load_checkpoint, train
from crunet.train.steps import train_step

PLAIN = TrainConfig(label_smoothing=0.0, channels_last=False)  # the step alone: no smoothing, no clipping


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_run_directory_holds_config_csv_summary_checkpoints_and_plot(cfg, tiny_model):
    cfg.plot, cfg.ema_decay = True, 0.9
    summary = train(cfg, tiny_model())
    run = cfg.out
    config = json.load(open(f"{run}/config.json"))
    assert config["lr"] == 0.1 and config["resolved"]["global_batch"] == 32
    assert config["resolved"]["train_images"] == 512
    rows = read_csv(f"{run}/metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"] and int(rows[-1]["step"]) == 2 * 16
    assert {"train_loss", "val_top1", "val_top5", "ema_val_top1", "images_per_s", "lr"} <= set(rows[0])
    assert float(rows[-1]["val_top1"]) > 30  # the look-alike data set is easy: the run learns
    saved = json.load(open(f"{run}/summary.json"))
    assert saved["best_val_top1"] == summary["best_val_top1"] == pytest.approx(max(float(r["val_top1"]) for r in rows))
    with open(f"{run}/curves.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    state = load_checkpoint(f"{run}/last.pt")
    assert state["epoch"] == 2 and state["epoch_step"] == 0 and state["ema"]
    assert load_checkpoint(f"{run}/best.pt")["step"] <= 32


def test_the_run_records_the_augmentation_it_applied_and_an_older_runs_auto_still_resumes(cfg, tiny_model, tmp_path):
    cfg.epochs, cfg.subset = 1, 96
    train(cfg, tiny_model())
    new, old = tmp_path / "run", tmp_path / "old"
    assert json.load(open(new / "config.json"))["augment"] == "light"  # auto, on IDX data
    assert load_checkpoint(new / "last.pt")["config"]["augment"] == "light"
    shutil.copytree(new, old)  # as a run written before: auto in its checkpoint and in config.json
    state = load_checkpoint(old / "last.pt")
    state["config"]["augment"] = "auto"
    torch.save(state, old / "last.pt")
    config = json.load(open(old / "config.json"))
    (old / "config.json").write_text(json.dumps({**config, "augment": "auto"}))
    for run in (new, old):  # both continue with one more epoch, the same way
        train(TrainConfig(**{**cfg.to_dict(), "resume": str(run / "last.pt"), "out": None, "epochs": 2}), tiny_model())
    assert json.load(open(old / "config.json"))["augment"] == "light"
    ours, theirs = load_checkpoint(old / "last.pt"), load_checkpoint(new / "last.pt")
    assert ours["step"] == theirs["step"] == 6
    for name, value in theirs["model"].items():
        assert torch.equal(ours["model"][name], value), name


def test_extra_losses_are_added_and_logged(cfg, tiny_model):
    class WithOrth(tiny_model):
        def extra_losses(self):
            return {"orth": 0.01 * self.conv.weight.pow(2).sum()}

    torch.manual_seed(0)
    model = WithOrth().eval()  # the same forward twice (no dropout draws)
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    stats = train_step(model, opt, [(x, y)], PLAIN)
    grad = model.conv.weight.grad.clone()
    model.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    torch.testing.assert_close(grad, model.conv.weight.grad + 0.02 * model.conv.weight)  # d(0.01 w^2) = 0.02 w
    assert stats["loss_orth"] / 8 == pytest.approx(0.01 * model.conv.weight.pow(2).sum().item(), rel=1e-5)

    cfg.epochs = 1
    train(cfg, WithOrth())
    row = read_csv(f"{cfg.out}/metrics.csv")[0]
    assert float(row["loss_orth"]) > 0


def test_gradient_clipping_bounds_the_norm(tiny_model):
    model, x, y = tiny_model(), torch.randn(8, 1, 28, 28) * 50, torch.arange(8)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    norm = lambda: torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))  # noqa: E731
    train_step(model, opt, [(x, y)], PLAIN)
    assert norm() > 0.1
    train_step(model, opt, [(x, y)], TrainConfig(label_smoothing=0.0, channels_last=False, clip_grad=0.01))
    assert norm() == pytest.approx(0.01, rel=1e-4)


def test_label_smoothing_enters_the_loss(tiny_model):
    model, x, y = tiny_model(), torch.randn(8, 1, 28, 28), torch.arange(8)
    model.eval()  # identical forward for both calls
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with torch.no_grad():
        logits = model(x)
    for eps in (0.0, 0.3):
        stats = train_step(model, opt, [(x, y)], TrainConfig(label_smoothing=eps, channels_last=False))
        expected = torch.nn.functional.cross_entropy(logits, y, label_smoothing=eps).item()
        assert stats["loss"] / 8 == pytest.approx(expected, rel=1e-5)


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(cfg, tiny_model):
    class Poisoned(tiny_model):
        calls = 0

        def forward(self, x):
            out = super().forward(x)
            if self.training:
                Poisoned.calls += 1
                if Poisoned.calls == 21:  # epoch 2 has 16 steps per epoch: this is step 20
                    out = out * float("nan")
            return out

    with pytest.raises(NonFiniteLossError, match="at step 20"):
        train(cfg, Poisoned())
    state = load_checkpoint(f"{cfg.out}/last.pt")
    assert state["epoch"] == 1 and state["step"] == 16
    assert torch.isfinite(state["model"]["fc.weight"]).all()


@pytest.fixture(scope="module")
def uninterrupted(run_config, tiny_model, tmp_path_factory):
    """(starting weights, final weights, run directory) of the ``cfg`` run, uninterrupted: once for the module."""
    torch.manual_seed(1)
    reference = tiny_model()
    start = {k: v.clone() for k, v in reference.state_dict().items()}
    out = tmp_path_factory.mktemp("uninterrupted") / "ref"
    train(run_config(out), reference)
    return start, reference.state_dict(), out


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM", "SIGUSR1"])
def test_a_signal_stops_at_the_next_step_boundary_and_resume_is_exact(cfg, tiny_model, tmp_path, signame,
                                                                      uninterrupted):
    start, final, ref_dir = uninterrupted

    class Signalled(tiny_model):
        calls = 0

        def forward(self, x):
            if self.training:
                Signalled.calls += 1
                if Signalled.calls == 21:  # inside step 20: the step finishes, the loop stops before step 21
                    os.kill(os.getpid(), getattr(signal, signame))
            return super().forward(x)

    first = Signalled()
    first.load_state_dict(start)
    cfg.out = str(tmp_path / "cut")
    with pytest.raises(TrainingInterrupted, match=f"{signame}.*--resume .*last.pt"):
        train(cfg, first)
    state = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert (state["epoch"], state["epoch_step"], state["step"]) == (1, 5, 21)

    resumed = tiny_model()
    cfg.resume, cfg.out = "auto", str(tmp_path / "cut")
    train(cfg, resumed)
    for k, v in final.items():
        assert torch.equal(resumed.state_dict()[k], v), k
    ref, cut = read_csv(ref_dir / "metrics.csv"), read_csv(tmp_path / "cut" / "metrics.csv")
    timing = ("images_per_s", "epoch_seconds")
    assert [{k: v for k, v in r.items() if k not in timing} for r in cut] == \
        [{k: v for k, v in r.items() if k not in timing} for r in ref]


def test_a_second_ctrl_c_mid_step_writes_no_checkpoint_and_names_the_last_one(cfg, tiny_model, tmp_path):
    class Insisted(tiny_model):
        calls = 0

        def forward(self, x):
            if self.training:
                Insisted.calls += 1
                if Insisted.calls == 21:
                    raise KeyboardInterrupt  # as a second Ctrl-C does, in the middle of a step
            return super().forward(x)

    with pytest.raises(TrainingInterrupted, match="second Ctrl-C.*--resume .*last.pt"):
        train(cfg, Insisted())
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (state["epoch"], state["epoch_step"], state["step"]) == (1, 0, 16)  # the epoch end, not a torn step


def test_corrupt_or_foreign_checkpoint_on_resume_changes_nothing(cfg, tiny_model, tmp_path):
    cfg.epochs = 1
    train(cfg, tiny_model())
    run = tmp_path / "run"
    files = {p.name: p.read_bytes() for p in run.iterdir()}
    last = run / "last.pt"
    cfg.resume = str(last)
    with pytest.raises(CheckpointError, match="different model.*fc"):
        train(cfg, _wider(tiny_model))
    torn = run / "torn.pt"
    torn.write_bytes(last.read_bytes()[:1000])
    files["torn.pt"] = torn.read_bytes()
    cfg.resume = str(torn)
    with pytest.raises(CheckpointError, match="corrupt"):
        train(cfg, tiny_model())
    assert {p.name: p.read_bytes() for p in run.iterdir()} == files


def _wider(tiny_model):
    model = tiny_model()
    model.fc = torch.nn.Linear(128, 10, bias=False)
    return model


def test_fp16_is_refused_on_the_cpu_and_bf16_trains(cfg, tiny_model):
    cfg.amp, cfg.epochs = "fp16", 1
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        train(cfg, tiny_model())
    cfg.amp = "bf16"
    summary = train(cfg, tiny_model())
    assert summary["steps"] == 16 and summary["final_val"]["count"] == 128


def test_subset_and_plain_progress_lines(cfg, tiny_model, capsys):
    cfg.subset, cfg.epochs, cfg.progress, cfg.log_every = 96, 1, "lines", 1
    summary = train(cfg, tiny_model())
    out = capsys.readouterr().out
    assert summary["steps"] == 3 and summary["final_val"]["count"] == 96
    assert "epoch 1/1 3/3" in out and "img/s" in out and "eta" in out


def test_bad_images_are_skipped_counted_and_reported_per_epoch(cfg, tiny_model, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for k in range(2):
            folder = tmp_path / "imgs" / split / f"c{k}"
            folder.mkdir(parents=True)
            for i in range(16):
                Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (tmp_path / "imgs" / "train" / "c0" / "zero.png").write_bytes(b"")
    (tmp_path / "imgs" / "train" / "c1" / "junk.jpg").write_text("junk")
    (tmp_path / "imgs" / "train" / "c2").mkdir()
    (tmp_path / "imgs" / "val" / "c2").mkdir()  # the same class list in both splits
    cfg.data, cfg.epochs, cfg.batch_size, cfg.progress = str(tmp_path / "imgs"), 1, 17, "none"
    model = tiny_model(num_classes=2, in_chans=3)
    model.pretrained_cfg = {**model.pretrained_cfg, "mean": (0.5,) * 3, "std": (0.5,) * 3}
    train(cfg, model)
    row = read_csv(f"{cfg.out}/metrics.csv")[0]
    out = capsys.readouterr().out
    assert row["skipped_images"] == "2" and "skipped 2 unreadable image(s)" in out
    assert "class folder 'c2' is empty" in out
    cfg.strict_data, cfg.out = True, str(tmp_path / "strict")
    with pytest.raises(ValueError, match="empty class folder"):
        train(cfg, model)
    (tmp_path / "imgs" / "train" / "c2").rmdir()
    (tmp_path / "imgs" / "val" / "c2").rmdir()
    with pytest.raises(ValueError, match="bad image"):
        train(cfg, model)


def test_an_existing_run_is_never_overwritten_by_a_new_one(cfg, tiny_model, tmp_path):
    cfg.epochs, cfg.subset = 1, 64
    train(cfg, tiny_model())
    before = (tmp_path / "run" / "last.pt").read_bytes()
    with pytest.raises(ValueError, match="already holds a run.*--resume"):
        train(cfg, tiny_model())
    assert (tmp_path / "run" / "last.pt").read_bytes() == before
    (tmp_path / "file").write_text("x")
    cfg.out = str(tmp_path / "file")
    with pytest.raises(ValueError, match="is a file"):
        train(cfg, tiny_model())


@pytest.mark.slow
def test_compile_trains_the_compiled_forward_and_saves_the_eager_weights(cfg, tiny_model, monkeypatch):
    compiled = []
    real_compile = torch.compile

    def spy(model, *args, **kwargs):
        compiled.append(model)
        return real_compile(model, *args, **kwargs)

    monkeypatch.setattr(torch, "compile", spy)
    cfg.epochs, cfg.subset, cfg.ema_decay, cfg.compile = 1, 256, 0.9, True
    torch.manual_seed(0)
    model = tiny_model()
    model.drop.p = 0.0  # compiled dropout draws other masks than eager dropout
    summary = train(cfg, model)
    assert compiled == [model] and summary["steps"] == 8
    state = load_checkpoint(f"{cfg.out}/last.pt")
    assert not any("_orig_mod" in k for k in [*state["model"], *state["ema"]])
    assert state["model"].keys() == model.state_dict().keys() == state["ema"].keys()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state["model"].items())
    assert json.load(open(f"{cfg.out}/config.json"))["compile"] is True
    fresh = tiny_model()
    fresh.load_state_dict(state["model"])

    cfg.compile, cfg.out = False, cfg.out + "-eager"  # the same run, eager: the same steps, about the same weights
    torch.manual_seed(0)
    eager = tiny_model()
    eager.drop.p = 0.0
    train(cfg, eager)
    eager_state = load_checkpoint(f"{cfg.out}/last.pt")["model"]
    for k, v in state["model"].items():
        torch.testing.assert_close(v, eager_state[k], rtol=1e-3, atol=1e-3)


def test_nothing_of_the_run_outlives_train(cfg, tiny_model, monkeypatch):
    """Under DDP the Run's wrapper holds the process group: left in a reference cycle (torch.optim's constructor makes
    one of its callers' frames), it would be freed at exit, after the group is destroyed, and Gloo aborts there."""
    import gc
    import weakref

    import crunet.train.trainer as trainer

    refs = []
    real_setup = trainer.setup

    def setup_and_watch(*args, **kwargs):
        run = real_setup(*args, **kwargs)
        refs.append(weakref.ref(run))
        return run

    monkeypatch.setattr(trainer, "setup", setup_and_watch)
    gc.disable()  # only train itself may free the cycle
    try:
        train(cfg, tiny_model())
        assert refs and refs[0]() is None
    finally:
        gc.enable()
