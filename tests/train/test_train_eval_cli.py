import json

import pytest
import torch

from crunet.cli.main import main
from crunet.data import idx


def test_no_data_set_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(idx, "DEFAULT_DIRS", (str(tmp_path / "absent"),))
    assert main(["train", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "Fashion-MNIST not found" in err and "get-fashion-mnist" in err and "--data" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
    assert main(["train", "--data", str(tmp_path)]) == 2
    assert "no data set recognised" in capsys.readouterr().err


def test_bad_arguments_are_one_line_errors(fmnist, capsys):
    assert main(["train", "--data", str(fmnist), "--schedule", "linear"]) == 2
    assert "--schedule must be one of cosine, step, plateau, constant" in capsys.readouterr().err
    assert main(["train", "--data", str(fmnist), "--batch-size", "4096"]) == 2
    assert "fewer than one global batch" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(fmnist, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(["train", "--data", str(fmnist), "--subset", "64", "--epochs", "1", "--batch-size", "32",
                 "--out", str(out), "--progress", "none", "--no-plot", "--no-tensorboard", "--workers", "0",
                 "--ema-decay", "0.5", "--lr", "0.05"])
    assert code == 0
    return out


def test_train_command_writes_the_run(trained):
    config = json.loads((trained / "config.json").read_text())
    assert config["model"] == "crunet_small" and config["ema_decay"] == 0.5 and config["resolved"]["in_chans"] == 1
    assert (trained / "last.pt").is_file() and (trained / "summary.json").is_file()


@pytest.mark.parametrize("crops", [1, 10])
def test_eval_command_writes_json(trained, crops, capsys):
    out = trained / f"eval{crops}.json"
    assert main(["eval", str(trained / "last.pt"), "--crops", str(crops), "--subset", "40", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["count"] == 40 and result["crops"] == crops
    assert 0 <= result["top1"] <= result["top5"] <= 100 and result["loss"] > 0 and result["images_per_s"] > 0
    assert json.loads(capsys.readouterr().out)["top1"] == result["top1"]


def test_a_weights_file_evaluates_as_its_checkpoint(trained, fmnist, tmp_path, capsys):
    from crunet.interop.weights import load_weights, save_weights

    weights = tmp_path / "w.safetensors"
    assert main(["export", "--checkpoint", str(trained / "last.pt"), "--format", "safetensors",
                 "--out", str(weights)]) == 0
    common = ["--subset", "40", "--data", str(fmnist)]
    assert main(["eval", str(trained / "last.pt"), *common, "--out", str(tmp_path / "c.json")]) == 0
    assert main(["eval", str(weights), *common]) == 0
    ckpt, file = (json.loads(path.read_text()) for path in (tmp_path / "c.json", tmp_path / "w-eval-1crop.json"))
    assert file["weights"] == str(weights) and (file["top1"], file["loss"]) == (ckpt["top1"], ckpt["loss"])
    capsys.readouterr()
    save_weights(load_weights(weights), tmp_path / "plain.safetensors")  # records no classes: name the data
    assert main(["eval", str(tmp_path / "plain.safetensors"), "--subset", "40"]) == 2
    assert "does not record the data it trained on: give it with --data" in capsys.readouterr().err
    assert main(["eval", str(weights), "--ema", *common]) == 2
    assert "--ema applies to training checkpoints" in capsys.readouterr().err


def test_ten_crops_average_over_crops_and_ema_weights_evaluate(trained):
    from crunet.train.evaluate import EvalOptions, evaluate_checkpoint

    one = evaluate_checkpoint(str(trained / "last.pt"), EvalOptions(subset=40, out=str(trained / "a.json")))
    ema = evaluate_checkpoint(str(trained / "last.pt"), EvalOptions(subset=40, ema=True, out=str(trained / "b.json")))
    ten = evaluate_checkpoint(str(trained / "last.pt"),
                              EvalOptions(crops=10, resize=32, subset=40, out=str(trained / "c.json")))
    assert one["loss"] != ten["loss"] and one["loss"] != ema["loss"]


def test_a_checkpoint_written_before_auto_was_recorded_resolved_evaluates_the_same(trained, tmp_path):
    from crunet.train import load_checkpoint
    from crunet.train.evaluate import EvalOptions, evaluate_checkpoint

    state = load_checkpoint(trained / "last.pt")
    assert state["config"]["augment"] == json.loads((trained / "config.json").read_text())["augment"] == "light"
    state["config"]["augment"] = "auto"
    torch.save(state, tmp_path / "old.pt")
    same = ("model", "data", "crops", "ema", "top1", "top5", "loss", "count", "skipped")
    new = evaluate_checkpoint(str(trained / "last.pt"), EvalOptions(subset=40, out=str(tmp_path / "new.json")))
    old = evaluate_checkpoint(str(tmp_path / "old.pt"), EvalOptions(subset=40, out=str(tmp_path / "old.json")))
    assert {k: old[k] for k in same} == {k: new[k] for k in same}


def test_eval_of_a_corrupt_checkpoint_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    assert main(["eval", str(tmp_path / "bad.pt")]) == 2
    assert "corrupt" in capsys.readouterr().err
