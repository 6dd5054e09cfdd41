"""``crunet predict``: a checkpoint or weights file and image files or folders give the top-k class names and
probabilities, the same the model computes on the evaluation transform; bad images are skipped and reported."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import crunet
from crunet.cli.main import main
from crunet.data.classes import FASHION_MNIST_CLASSES, MNIST_CLASSES, class_names
from crunet.data.transforms import EvalCrops
from crunet.interop.predict import find_images, load_predictor, predict, write_predictions
from crunet.interop.weights import read_weights, save_weights
from crunet.train.checkpoint import save_checkpoint
from crunet.train.config import TrainConfig
from tests.helpers import write_idx

CLASSES = ["cat", "dog", "emu"]


@pytest.fixture
def folder_data(tmp_path):
    """train/<class>/ and val/<class>/ with two 40x36 RGB images each."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for split in ("train", "val"):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 255, (36, 40, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root


def _checkpoint(path, data, classes=None, model_name="crunet_small", in_chans=3, num_classes=3, **config):
    model = crunet.create_model(model_name, num_classes=num_classes, in_chans=in_chans)
    with torch.no_grad():
        for p in model.parameters():  # distinct classes get distinct scores
            p.add_(torch.randn_like(p) * 0.1)
    state = {"config": TrainConfig(model=model_name, data=data, **config).to_dict(), "model_name": model_name,
             "num_classes": num_classes, "in_chans": in_chans, "model": model.state_dict(), "ema": {}}
    if classes is not None:
        state["classes"] = classes
    save_checkpoint(state, path)
    return model.eval()


def _images(folder, n=5, bad=True):
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (30 + i, 34, 3), dtype=np.uint8)).save(folder / f"img{i}.jpg")
    if bad:
        (folder / "empty.png").write_bytes(b"")
        (folder / "text.jpg").write_text("not an image")
    (folder / "notes.txt").write_text("ignored: not an image extension")
    return folder


def test_checkpoint_predictions_are_the_models_softmax_on_the_eval_transform(tmp_path, folder_data):
    model = _checkpoint(tmp_path / "last.pt", str(folder_data))
    predictor = load_predictor(tmp_path / "last.pt")
    assert predictor.classes == CLASSES  # the data set's class folders, found from the checkpoint's config
    files = find_images([_images(tmp_path / "in")])
    assert len(files) == 7 and not any(f.suffix == ".txt" for f in files)
    results, skipped = predict(predictor, files, topk=2, batch_size=3)
    assert sorted(Path(f).name for f, _ in skipped) == ["empty.png", "text.jpg"]
    assert all("bad image" in reason for _, reason in skipped)
    assert [r.filename for r in results] == [str(f) for f in files if f.name.startswith("img")]
    transform = EvalCrops(28, 28, (0.286,) * 3, (0.353,) * 3, 3, 1)  # crunet_small: 28 px, crop_pct 1
    for r in results:
        with torch.no_grad():
            probs = model(transform(Image.open(r.filename))[None]).softmax(1)[0]
        top = probs.topk(2)
        assert r.classes == [CLASSES[i] for i in top.indices.tolist()]
        assert r.probs == pytest.approx(top.values.tolist(), abs=1e-6)
        assert r.probs[0] >= r.probs[1]


def test_ten_crops_average_the_softmax_over_the_crops(tmp_path, folder_data):
    model = _checkpoint(tmp_path / "best.pt", str(folder_data), classes=["a", "b", "c"])
    predictor = load_predictor(tmp_path / "best.pt", crops=10, resize=32)
    assert predictor.classes == ["a", "b", "c"]  # stored in the checkpoint: they win
    files = find_images([_images(tmp_path / "in", n=2, bad=False)])
    results, skipped = predict(predictor, files, topk=3)
    assert not skipped
    transform = EvalCrops(28, 32, (0.286,) * 3, (0.353,) * 3, 3, 10)
    crops = transform(Image.open(files[0]))
    assert crops.shape == (10, 3, 28, 28)
    with torch.no_grad():
        probs = model(crops).softmax(1).mean(0)
    assert dict(zip(results[0].classes, results[0].probs, strict=True)) == pytest.approx(
        dict(zip(["a", "b", "c"], probs.tolist(), strict=True)), abs=1e-6)


def test_class_names_of_each_data_kind(tmp_path, folder_data):
    assert class_names(None) == list(FASHION_MNIST_CLASSES)
    assert class_names(str(folder_data)) == CLASSES
    assert class_names(str(tmp_path / "moved")) is None
    digits, clothes = tmp_path / "digits", tmp_path / "clothes"  # told apart by their images, not their names
    for folder, lit in ((digits, slice(12, 14)), (clothes, slice(4, 24))):
        folder.mkdir()
        images = np.zeros((8, 28, 28))
        images[:, 4:24, lit] = 200  # a stroke (5% of the pixels lit) or a garment (51%)
        for prefix in ("train", "t10k"):
            write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
            write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(8))
    assert class_names(str(digits)) == list(MNIST_CLASSES)
    assert class_names(str(clothes)) == list(FASHION_MNIST_CLASSES)


def test_weights_file_with_a_class_file_and_one_channel_model(tmp_path):
    model = crunet.create_model("crunet_small", num_classes=10, in_chans=1).eval()
    save_weights(model, tmp_path / "w.safetensors")
    predictor = load_predictor(tmp_path / "w.safetensors")
    assert predictor.classes == [str(i) for i in range(10)]  # no names stored: the label numbers
    names = [f"c{i}" for i in range(10)]
    predictor = load_predictor(tmp_path / "w.safetensors", classes=names)
    results, _ = predict(predictor, find_images([_images(tmp_path / "in", n=1, bad=False) / "img0.jpg"]), topk=10)
    assert sorted(results[0].classes) == sorted(names) and sum(results[0].probs) == pytest.approx(1, abs=1e-4)
    with pytest.raises(ValueError, match="3 class names for a model with 10 classes"):
        load_predictor(tmp_path / "w.safetensors", classes=["a", "b", "c"])


def test_an_exported_weights_file_keeps_the_runs_normalization_and_predicts_as_the_checkpoint(tmp_path, folder_data):
    run = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "crop_pct": 0.8}  # a recipe's, not crunet_small's
    _checkpoint(tmp_path / "best.pt", str(folder_data), classes=CLASSES, **run)
    out = tmp_path / "w.safetensors"
    export = ["export", "--checkpoint", str(tmp_path / "best.pt"), "--format", "safetensors", "--out", str(out)]
    assert main(export) == 0
    assert read_weights(out).normalization == read_weights(tmp_path / "best.pt").normalization == run
    files = find_images([_images(tmp_path / "in", bad=False)])
    from_checkpoint, from_file = (load_predictor(p) for p in (tmp_path / "best.pt", out))
    assert from_file.transform == from_checkpoint.transform == EvalCrops(28, 35, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    assert predict(from_file, files, topk=3) == predict(from_checkpoint, files, topk=3)


def test_csv_and_json_outputs(tmp_path, folder_data):
    _checkpoint(tmp_path / "last.pt", str(folder_data))
    predictor = load_predictor(tmp_path / "last.pt")
    results, skipped = predict(predictor, find_images([_images(tmp_path / "in", n=2)]), topk=2)
    with open(write_predictions(results, skipped, tmp_path / "p.csv")) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["filename", "class_1", "prob_1", "class_2", "prob_2"] and len(rows) == 3
    assert rows[1][1] == results[0].classes[0] and float(rows[1][2]) == pytest.approx(results[0].probs[0])
    doc = json.loads(write_predictions(results, skipped, tmp_path / "p.json", info={"model": "crunet_small"})
                     .read_text())
    assert doc["model"] == "crunet_small" and len(doc["predictions"]) == 2 and len(doc["skipped"]) == 2
    assert doc["predictions"][0]["topk"][0] == {"class": results[0].classes[0], "prob": results[0].probs[0]}


def test_predict_command(tmp_path, folder_data, capsys):
    _checkpoint(tmp_path / "last.pt", str(folder_data))
    images = _images(tmp_path / "in", n=3)
    out = tmp_path / "out.json"
    rc = main(["predict", str(tmp_path / "last.pt"), str(images), str(images / "img0.jpg"), "--topk", "2",
               "--out", str(out), "--progress", "none", "--workers", "0", "--crops", "10"])
    captured = capsys.readouterr()
    assert rc == 0
    assert "4 images predicted, 2 skipped" in captured.out and "skipped: bad image" in captured.err
    doc = json.loads(out.read_text())
    assert doc["crops"] == 10 and len(doc["predictions"]) == 4
    assert {p["topk"][0]["class"] for p in doc["predictions"]} <= set(CLASSES)


@pytest.mark.parametrize("args, message", [
    (["missing.pt", "x.jpg"], "does not exist"),
    (["CKPT", "nowhere/"], "nowhere does not exist"),
    (["CKPT", "EMPTY"], "no image files"),
    (["CKPT", "IMG", "--topk", "0"], "--topk and --batch-size must be at least 1"),
])
def test_predict_command_errors_are_one_line(tmp_path, folder_data, capsys, args, message):
    _checkpoint(tmp_path / "last.pt", str(folder_data))
    (tmp_path / "empty").mkdir()
    images = _images(tmp_path / "in", n=1, bad=False)
    subs = {"CKPT": str(tmp_path / "last.pt"), "EMPTY": str(tmp_path / "empty"), "IMG": str(images / "img0.jpg")}
    rc = main(["predict", *[subs.get(a, a) for a in args], "--out", str(tmp_path / "o.csv"), "--progress", "none"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err


def test_a_trained_run_stores_its_class_names_for_predict(tmp_path, folder_data):
    from crunet.train import train

    cfg = TrainConfig(model="crunet_small", data=str(folder_data), out=str(tmp_path / "run"), epochs=1, batch_size=3,
                      warmup_epochs=0.0, progress="none", tensorboard=False, plot=False, workers=0)
    train(cfg)
    predictor = load_predictor(tmp_path / "run" / "last.pt")
    assert predictor.classes == CLASSES and predictor.info["img_size"] == 28
    (folder_data / "train" / "cat").rename(folder_data / "train" / "zebra")  # the names come from the checkpoint
    assert load_predictor(tmp_path / "run" / "last.pt").classes == CLASSES


def test_a_fashion_mnist_run_predicts_at_the_size_it_trained_at(tmp_path, fmnist):
    from crunet.train import train

    cfg = TrainConfig(model="resnet32_cifar", data=str(fmnist), out=str(tmp_path / "run"), epochs=1, batch_size=64,
                      subset=64, val_subset=32, warmup_epochs=0.0, progress="none", tensorboard=False, plot=False,
                      workers=0)
    train(cfg)
    predictor = load_predictor(tmp_path / "run" / "last.pt")
    assert predictor.info["img_size"] == 28  # its 28x28 images, not the 32 of the model's CIFAR config


def test_a_run_with_design_overrides_evaluates_exports_and_predicts_as_it_trained(tmp_path, fmnist):
    from crunet.interop.weights import load_weights, read_safetensors
    from crunet.train import train
    from crunet.train.evaluate import EvalOptions, evaluate_checkpoint

    data = tmp_path / "fashion"  # the path says Fashion-MNIST: its class names are stored
    shutil.copytree(fmnist, data)
    overrides = {"widths": (11, 23, 45), "shared_rank": 11}  # the study's size=0.5 of this model
    cfg = TrainConfig(model="dsfb_resnet32_s16u1", model_kwargs=overrides, data=str(data), out=str(tmp_path / "run"),
                      epochs=1, batch_size=64, subset=64, val_subset=32, warmup_epochs=0.0, progress="none",
                      tensorboard=False, plot=False, workers=0)
    train(cfg)
    checkpoint = tmp_path / "run" / "last.pt"
    rebuilt = evaluate_checkpoint(str(checkpoint), EvalOptions(workers=0, subset=32))  # rebuilt with its overrides
    assert rebuilt["count"] == 32 and rebuilt["top1"] >= 0
    weights = tmp_path / "small.safetensors"
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "safetensors", "--out", str(weights)]) == 0
    meta = read_safetensors(weights)[1]
    assert json.loads(meta["model_kwargs"]) == {"widths": [11, 23, 45], "shared_rank": 11}
    model = load_weights(weights)
    assert sum(p.numel() for p in model.parameters()) == 103_540  # not the 196,970 of the default design
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), load_predictor(checkpoint).model(x))
    predictor = load_predictor(weights)  # a weights file alone: the class names and size of the run it came from
    assert predictor.classes == list(FASHION_MNIST_CLASSES) and predictor.info["img_size"] == 28
