"""Every numeric option is checked up front: one line naming the option, exit status 2, nothing written."""

import pytest

from crunet.cli.main import main
from crunet.errors import ConfigError
from crunet.train import TrainConfig


@pytest.mark.parametrize("flag, value, says", [
    ("--warmup-epochs", "-1", "--warmup-epochs must be a number >= 0.0"),
    ("--gamma", "-1", "--gamma must be a number > 0.0 and <= 1.0"),
    ("--subset", "-5", "--subset must be an integer >= 0"),
    ("--clip-grad", "-1", "--clip-grad must be a number >= 0.0"),
    ("--lr", "nan", "--lr must be a number > 0.0, got nan"),
    ("--lr", "inf", "--lr must be a number > 0.0, got inf"),
    ("--momentum", "1.5", "--momentum must be a number >= 0.0 and < 1.0"),
    ("--weight-decay", "-0.1", "--weight-decay must be a number >= 0.0"),
    ("--label-smoothing", "1", "--label-smoothing must be a number >= 0.0 and < 1.0"),
    ("--log-every", "0", "--log-every must be an integer >= 1"),
    ("--epochs", "0", "--epochs must be an integer >= 1"),
    ("--workers", "-1", "--workers must be an integer >= 0"),
    ("--img-size", "0", "--img-size must be an integer >= 8"),
    ("--device", "gpu7", "--device must be auto, cpu, cuda or cuda:N, got 'gpu7'"),
    ("--checkpoint-every", "soon", "--checkpoint-every 'soon': expected steps (500), minutes (30m) or both"),
    ("--crops", "3", "--crops must be 1 or 10"),
    ("--decode", "gpu", "--decode must be one of cpu, device, got 'gpu'"),
])
def test_a_bad_option_is_one_line_naming_it(fmnist, tmp_path, capsys, flag, value, says):
    out = tmp_path / "run"
    assert main(["train", "--data", str(fmnist), "--out", str(out), flag, value]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_the_library_checks_the_same(tmp_path):
    with pytest.raises(ConfigError, match="--gamma"):
        TrainConfig(gamma=float("nan")).check()
    with pytest.raises(ConfigError, match="--resume auto needs --out"):
        from crunet.train import train

        train(TrainConfig(resume="auto"))


def test_an_unavailable_cuda_device_is_an_error_not_a_cpu_fallback(fmnist, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["train", "--data", str(fmnist), "--out", str(tmp_path / "r"), "--device", "cuda"]) == 2
    assert "no CUDA GPU is available here" in capsys.readouterr().err


def test_interrupted_prints_the_resume_path(fmnist, tmp_path, capsys, monkeypatch):
    from crunet.train import TrainingInterrupted

    def stopped(cfg):
        raise TrainingInterrupted("stopped by SIGTERM; resumable checkpoint r/last.pt at step 3; continue with "
                                  "`crunet train --resume r/last.pt`")

    monkeypatch.setattr("crunet.train.trainer.train", stopped)
    assert main(["train", "--data", str(fmnist)]) == 130
    assert "crunet train --resume r/last.pt" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [("--batch-size", "0"), ("--subset", "-1"), ("--resize", "0")])
def test_eval_options_are_checked_too(tmp_path, capsys, flag, value):
    assert main(["eval", str(tmp_path / "x.pt"), flag, value]) == 2
    assert f"{flag} must be an integer" in capsys.readouterr().err
