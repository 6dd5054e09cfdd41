"""``crunet compress``: a trained ResNet converted into its DSFB design (or a thinner copy) and fine-tuned with the
original as teacher, in a normal run directory that records the conversion; a pair that cannot convert is one line."""

import csv
import json

import pytest

from crunet.cli.main import main
from crunet.train import TrainConfig, train

DESIGN = '{"depths": [2, 2, 2], "widths": [4, 8, 8]}'  # the teacher's: a tiny resnet32_cifar
QUIET = ["--batch-size", "32", "--subset", "64", "--workers", "0", "--progress", "none", "--no-tensorboard",
         "--no-plot", "--init-images", "32"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, fmnist):
    out = tmp_path_factory.mktemp("teacher") / "run"
    train(TrainConfig(model="resnet32_cifar", model_kwargs=json.loads(DESIGN), data=str(fmnist), out=str(out),
                      epochs=1, subset=64, batch_size=32, progress="none", tensorboard=False, plot=False, workers=0))
    return out / "last.pt"


def test_compress_into_dsfb_records_the_conversion_and_distils(teacher, fmnist, tmp_path):
    out = tmp_path / "dsfb"
    target = '{"depths": [2, 2, 2], "widths": [4, 8, 8], "shared_rank": 2}'
    assert main(["compress", str(teacher), "--to", "dsfb_resnet32_s16u1", "--model-kwargs", target, "--epochs", "1",
                 "--method", "data", "--data", str(fmnist), "--out", str(out), *QUIET]) == 0
    init = json.load(open(out / "init.json"))
    assert init["init_method"] == "data" and len(init["groups"]) == 3 and init["images"] == 32
    assert all(0 <= g["output_error"] <= 1 for g in init["groups"]) and "top1" in init["val_before"]
    config = json.load(open(out / "config.json"))
    assert config["teacher"] == config["init_from"] == str(teacher) and config["lr"] == 0.05
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == 1 and float(rows[0]["loss_kd"]) > 0


def test_compress_into_a_thinner_copy_keeps_filters_by_norm_and_resumes_without_converting(teacher, fmnist,
                                                                                           tmp_path):
    out = tmp_path / "thin"
    thin = '{"depths": [2, 2, 2], "widths": [3, 6, 6]}'
    assert main(["compress", str(teacher), "--to", "resnet32_cifar", "--model-kwargs", thin, "--epochs", "1",
                 "--no-teacher", "--data", str(fmnist), "--out", str(out), *QUIET]) == 0
    init = (out / "init.json").read_text()
    assert json.loads(init)["init_method"] == "norm"
    assert json.load(open(out / "config.json"))["teacher"] is None
    assert main(["train", "--resume", "auto", "--out", str(out), "--epochs", "2", "--progress", "none"]) == 0
    assert (out / "init.json").read_text() == init  # the resumed run took its weights from its checkpoint
    assert len(list(csv.DictReader(open(out / "metrics.csv")))) == 2


def test_a_pair_that_cannot_convert_is_one_line(teacher, fmnist, tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["compress", str(teacher), "--to", "dsfb_resnet32_s16u1", "--epochs", "1", "--data", str(fmnist),
                 "--out", str(out), *QUIET]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not the shared design of resnet32_cifar" in err
    assert main(["compress", str(tmp_path / "none.pt"), "--to", "dsfb_resnet32_s16u1"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_compressed_run_feeds_the_input_the_original_run_saw(tmp_path):
    import torch

    from crunet.io.checkpoint import FORMAT
    from crunet.train.init_from import compress_config

    path = tmp_path / "teacher.pt"
    config = {"data": "somewhere", "mean": [0.1], "std": [0.2], "crop_pct": 0.875, "lr": 0.4}
    torch.save({"format": FORMAT, "model_name": "resnet32_cifar", "config": config}, path)
    cfg = compress_config(str(path), "resnet32_cifar", "norm")
    assert (cfg.data, cfg.mean, cfg.std, cfg.crop_pct, cfg.lr) == ("somewhere", [0.1], [0.2], 0.875, 0.05)
    given = compress_config(str(path), "resnet32_cifar", "norm", crop_pct=1.0, lr=0.01)
    assert (given.crop_pct, given.lr, given.mean) == (1.0, 0.01, [0.1])  # what the user gives wins
