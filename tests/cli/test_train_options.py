"""``crunet train``: a preset fills only what the user left unset; an option that cannot apply is refused."""

import pytest

import crunet.train.trainer as trainer
from crunet.cli.main import main
from crunet.train.config import PRESETS, TrainConfig


@pytest.fixture
def given(monkeypatch):
    """The TrainConfig ``crunet train ARGS`` hands the trainer, resolved as the trainer resolves a fresh run."""
    seen = []
    monkeypatch.setattr(trainer, "train", lambda cfg: seen.append(cfg))

    def parse(*argv: str) -> TrainConfig:
        assert main(["train", *argv]) == 0
        cfg = seen.pop()
        cfg.check()
        return cfg.apply_preset()
    return parse


def test_a_preset_keeps_the_options_given(given):
    cfg = given("--preset", "paper50", "--lr", "0.05")
    assert (cfg.lr, cfg.weight_decay, cfg.schedule) == (0.05, 5e-4, "plateau")
    cfg = given("--preset", "paper-deep", "--schedule", "cosine", "--lr", "0.2")  # 0.2 is also the plain default
    assert (cfg.lr, cfg.weight_decay, cfg.schedule) == (0.2, 2e-4, "cosine")
    cfg = given("--preset", "paper50")
    assert (cfg.lr, cfg.weight_decay, cfg.schedule) == (0.1, 5e-4, "plateau")
    cfg = given()
    assert (cfg.lr, cfg.weight_decay, cfg.schedule) == (0.2, 5e-4, "cosine")


def test_a_preset_given_on_resume_fills_only_what_is_not_given():
    saved = TrainConfig(lr=0.3).apply_preset().to_dict()
    assert TrainConfig(resume="r").merged_for_resume(saved).lr == 0.3  # the run's own
    merged = TrainConfig(resume="r", preset="paper50", lr=0.07).merged_for_resume(saved)
    assert (merged.lr, merged.weight_decay, merged.schedule) == (0.07, PRESETS["paper50"]["weight_decay"], "plateau")


@pytest.mark.parametrize(("argv", "flag"), [
    (["--augment", "rrc"], "--augment rrc"),
    (["--augment", "paper"], "--augment paper"),
    (["--augment", "none", "--pad", "2"], "--pad 2"),
])
def test_an_option_that_cannot_apply_to_idx_data_is_refused(fmnist, tmp_path, capsys, argv, flag):
    code = main(["train", "--data", str(fmnist), "--out", str(tmp_path / "run"), "--epochs", "1", "--subset", "32",
                 "--progress", "none", "--no-tensorboard", "--no-plot", "--workers", "0", *argv])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1 and flag in err[0] and "IDX" in err[0], err
    assert not (tmp_path / "run").exists()  # refused before anything is written


@pytest.mark.parametrize("command", ["train", "compress"])
def test_help_says_every_default(command):
    """The options are parsed with argparse.SUPPRESS (so that a recipe can tell given from default), so argparse
    cannot show the defaults: each option's help says its own, and says it right."""
    import dataclasses

    from crunet.cli.main import build_parser

    sub = build_parser([command])._subparsers._group_actions[0].choices[command]
    helps = {a.dest: a.help or "" for a in sub._actions}
    for f in dataclasses.fields(TrainConfig):
        if f.name not in helps:
            continue  # compress sets these itself (--to, the checkpoint)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if default is None or default in ({}, []):
            continue
        assert "default" in helps[f.name], f"--{f.name}: its help names no default"
    assert "(default 5)" in helps["epochs"] and "(default on)" in helps["nesterov"]
    assert "(default off)" in helps["sync_bn"] and "(default 30 60 80)" in helps["step_epochs"]
    lr = sub.parse_args(["x", "--to", "y"] if command == "compress" else []).__dict__.get("lr")
    assert (lr, "default 0.05" in helps["lr"]) == ((0.05, True) if command == "compress" else (None, False))
