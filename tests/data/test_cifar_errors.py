"""A broken CIFAR data set is one line naming the file and what is wrong, exit status 2, and no run directory."""

import os
import pickle
import re

import numpy as np
import pytest

from crunet.cli.main import main
from crunet.data.cifar import read_split
from crunet.data.cifar_files import find_cifar
from crunet.data.cifar_py2pickle import py2_pickle
from crunet.errors import FileFormatError
from tests.data.cifar_files import write_cifar_set


class _RunsAShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _train(tmp_path, monkeypatch, capsys, data) -> str:
    monkeypatch.chdir(tmp_path)
    status = main(["train", "--model", "resnet32_cifar", "--data", str(data), "--epochs", "1", "--subset", "8",
                   "--progress", "none", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()
    return err


def _replace(name, data):
    return lambda files: {**files, name: data}


def _truncated_archive(root):
    path = write_cifar_set(root, "cifar10", archive=True).path
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _without(root, name):
    path = write_cifar_set(root, "cifar10").path
    (path / name).unlink()
    return path


def _label_out_of_range(files):
    records = bytearray(files["test_batch.bin"])
    records[3073 * 2] = 10  # the third record's label: CIFAR-10 has labels 0..9
    return {**files, "test_batch.bin": bytes(records)}


CASES = {  # name: (make the data set under root, what the line must say)
    "truncated archive": (_truncated_archive, r"cifar-10-python\.tar\.gz is truncated"),
    "record length": (lambda root: write_cifar_set(root, "cifar100", binary=True, edit=lambda f: {
        **f, "train.bin": f["train.bin"][:-5]}).path, r"train\.bin has 61,475 bytes, not a whole number of 3074-byte"),
    "missing batch": (lambda root: _without(root, "data_batch_3"), r"data_batch_3 missing"),
    "label out of range": (lambda root: write_cifar_set(root, "cifar10", binary=True, edit=_label_out_of_range).path,
                           r"test_batch\.bin: label 10 of image 2 is out of range"),
    "class names": (lambda root: write_cifar_set(root, "cifar10", binary=True, edit=_replace(
        "batches.meta.txt", b"a\nb\nc\nd\ne\nf\ng\nh\ni\n")).path,
                    r"batches\.meta\.txt names 9 classes; CIFAR-10 binary's fine labels have 10"),
    "other keys": (lambda root: write_cifar_set(root, "cifar10", edit=_replace("data_batch_2", py2_pickle(
        {"images": np.zeros((4, 3072), np.uint8), "labels": [0] * 4}))).path,
                   r"data_batch_2 holds images, labels; a CIFAR-10 python batch is a dict with 'data'"),
    "other shape": (lambda root: write_cifar_set(root, "cifar100", edit=_replace("train", py2_pickle(
        {"data": np.zeros((4, 3, 32, 32), np.uint8), "fine_labels": [0] * 4, "coarse_labels": [0] * 4}))).path,
                    r"train: 'data' is uint8 \(4, 3, 32, 32\); a CIFAR-100 python batch holds uint8 N x 3072"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_broken_data_set_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys, case):
    make, says = CASES[case]
    data = make(tmp_path / "data")
    err = _train(tmp_path, monkeypatch, capsys, data)
    assert re.search(says, err), err


@pytest.mark.parametrize("archive", [False, True])
def test_a_crafted_pickle_is_refused_and_its_command_never_runs(tmp_path, monkeypatch, capsys, archive):
    marker = tmp_path / "owned"
    evil = pickle.dumps(_RunsAShellCommand(marker), protocol=2)
    data = write_cifar_set(tmp_path / "data", "cifar10", archive=archive, edit=_replace("data_batch_4", evil)).path
    with pytest.raises(FileFormatError, match=r"data_batch_4 refers to posix\.system: not a plain numpy array"):
        read_split(find_cifar(data), "train")
    err = _train(tmp_path, monkeypatch, capsys, data)
    assert "posix.system" in err and "refused without running it" in err
    assert not marker.exists()


def test_cifar100_labels_is_refused_on_other_data(tmp_path, monkeypatch, capsys, fmnist):
    monkeypatch.chdir(tmp_path)
    status = main(["train", "--model", "resnet32_cifar", "--data", str(fmnist), "--cifar100-labels", "coarse",
                   "--epochs", "1", "--subset", "8", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2 and "--cifar100-labels coarse chooses CIFAR-100's label set" in err
    assert not (tmp_path / "run").exists()
