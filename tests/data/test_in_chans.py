"""``--in-chans 3`` on grey in-memory data: the grey channel repeated, so a colour model trains on Fashion-MNIST
exactly as on Fashion-MNIST written as CIFAR-10 (the look-alike's pixels in both forms)."""

import csv
import json

from crunet.cli.main import main
from crunet.data.cifar_lookalike import write_lookalike, write_padded_idx

COLUMNS = ("train_loss", "train_top1", "val_loss", "val_top1")


def _train(data, out, *options):
    return main(["train", "--model", "resnet32_cifar", "--data", str(data), "--epochs", "1", "--subset", "48",
                 "--batch-size", "16", "--pad", "4", "--out", str(out), "--progress", "none", "--no-plot",
                 "--no-tensorboard", "--workers", "0", "--seed", "3", *options])


def _metrics(run):
    with open(run / "metrics.csv", newline="") as f:
        return [{k: row[k] for k in COLUMNS} for row in csv.DictReader(f)]


def test_a_colour_model_on_grey_idx_data_trains_exactly_as_on_its_cifar_lookalike(tmp_path, fmnist, capsys):
    cifar = write_lookalike(fmnist, tmp_path / "lookalike")[1]  # cifar-10-python.tar.gz
    idx = write_padded_idx(fmnist, tmp_path / "idx-32x32")
    assert _train(cifar, tmp_path / "cifar") == 0
    assert _train(idx, tmp_path / "idx", "--in-chans", "3") == 0
    resolved = json.loads((tmp_path / "idx" / "config.json").read_text())["resolved"]
    assert resolved["in_chans"] == 3 and resolved["img_size"] == 32
    assert _metrics(tmp_path / "idx") == _metrics(tmp_path / "cifar")
    capsys.readouterr()  # crunet eval of the checkpoint repeats the grey channel as training did
    assert main(["eval", str(tmp_path / "idx" / "last.pt"), "--out", str(tmp_path / "eval.json")]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["count"] == 128


def test_in_chans_that_the_data_cannot_meet_is_one_line(tmp_path, fmnist, capsys):
    cifar = write_lookalike(fmnist, tmp_path / "lookalike")[1]
    code = _train(cifar, tmp_path / "run", "--in-chans", "1")
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1 and "--in-chans 1" in err[0] and "3 channels" in err[0], err
    assert not (tmp_path / "run").exists()
