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
