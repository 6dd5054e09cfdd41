"""``crunet train`` and ``crunet eval`` on CIFAR data: the source's augmentation, CIFAR-100's label sets, the class
names recorded for ``crunet predict``."""

import json

import pytest

from crunet.cli.main import main
from crunet.io.checkpoint import load_checkpoint
from tests.data.cifar_files import write_cifar_set


def _train(data, out, *options):
    return main(["train", "--model", "resnet32_cifar", "--data", str(data), "--epochs", "1", "--subset", "8",
                 "--batch-size", "8", "--pad", "4", "--out", str(out), "--progress", "none", "--no-plot",
                 "--no-tensorboard", "--workers", "0", *options])


@pytest.mark.parametrize(("kind", "binary", "archive", "labels"), [
    ("cifar10", True, False, "fine"), ("cifar100", False, True, "coarse")])
def test_train_then_eval_on_cifar(tmp_path, capsys, kind, binary, archive, labels):
    written = write_cifar_set(tmp_path / "data", kind, binary, archive)
    options = ["--cifar100-labels", labels] if kind == "cifar100" else []
    assert _train(written.path, tmp_path / "run", *options) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    names = written.coarse_classes if labels == "coarse" else written.classes
    assert config["augment"] == "light" and config["pad"] == 4 and config["cifar100_labels"] == labels
    assert config["resolved"]["num_classes"] == len(names) and config["resolved"]["in_chans"] == 3
    assert config["resolved"]["img_size"] == 32
    assert load_checkpoint(tmp_path / "run" / "last.pt")["classes"] == names
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run" / "last.pt"), "--out", str(tmp_path / "eval.json")]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["count"] == 8 and result["data"] == str(written.path)  # the whole test split
