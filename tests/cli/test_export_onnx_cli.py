"""``crunet export --format onnx`` with ``--graph small|fast`` and ``--int8``, and ``crunet eval`` of the files it
writes; every user mistake along the way is one line and exit status 2."""

from __future__ import annotations

import json

import pytest

from crunet.cli.main import main

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def checkpoint(fmnist, tmp_path_factory):
    """crunet_small after one epoch on 64 images of the Fashion-MNIST look-alike (grey, 28x28)."""
    out = tmp_path_factory.mktemp("onnx-cli") / "run"
    assert main(["train", "--data", str(fmnist), "--subset", "64", "--epochs", "1", "--batch-size", "32",
                 "--out", str(out), "--progress", "none", "--no-plot", "--no-tensorboard", "--workers", "0"]) == 0
    return out / "last.pt"


def _export(checkpoint, out, *extra) -> int:
    return main(["export", "--checkpoint", str(checkpoint), "--format", "onnx", "--out", str(out), *extra])


def _eval(path, out, *extra) -> dict:
    assert main(["eval", str(path), "--workers", "0", "--subset", "64", "--out", str(out), *extra]) == 0
    return json.loads(out.read_text())


@pytest.mark.slow
def test_small_fast_and_int8_files_evaluate_on_the_checkpoints_data(checkpoint, tmp_path, capsys):
    small, fast, int8 = tmp_path / "small.onnx", tmp_path / "fast.onnx", tmp_path / "int8.onnx"
    assert _export(checkpoint, small) == 0
    said = capsys.readouterr().out
    assert "small graph (sharing kept" in said and f"{small.stat().st_size:,} bytes" in said
    assert _export(checkpoint, fast, "--graph", "fast") == 0
    assert "fast graph (sharing unrolled" in capsys.readouterr().out
    assert small.stat().st_size < fast.stat().st_size  # crunet_small's shared factors, copied per use
    assert _export(checkpoint, int8, "--int8", "--calibration-images", "48") == 0
    said = capsys.readouterr().out
    assert "int8, calibrated on 48 images" in said and int8.stat().st_size < small.stat().st_size / 3

    reference = _eval(checkpoint, tmp_path / "ckpt.json")
    for path in (small, fast, int8):
        got = _eval(path, tmp_path / f"{path.stem}.json")  # no --data: the file names the data it trained on
        assert got["count"] == reference["count"] == 64
        if path is int8:
            assert got["precision"].startswith("int8") and abs(got["top1"] - reference["top1"]) <= 10
        else:  # the same images, normalized the same way, through the same function
            assert got["precision"] == "float32" and got["top1"] == pytest.approx(reference["top1"])
            assert got["loss"] == pytest.approx(reference["loss"], rel=1e-4)


def test_int8_without_calibration_data_is_one_line(checkpoint, tmp_path, capsys):
    weights = tmp_path / "w.safetensors"  # a weights file does not say what the model trained on
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "safetensors", "--out", str(weights)]) == 0
    capsys.readouterr()
    assert _export(weights, tmp_path / "q.onnx", "--int8") == 2
    err = capsys.readouterr().err
    assert "--calibration-data" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "q.onnx").exists()


def test_colour_calibration_images_for_a_grey_model_are_refused(checkpoint, tmp_path, capsys):
    from tests.helpers import jpeg_folders

    photos = jpeg_folders(tmp_path / "photos")
    assert _export(checkpoint, tmp_path / "q.onnx", "--int8", "--calibration-data", str(photos)) == 2
    err = capsys.readouterr().err
    assert "is folder data but crunet_small trained on fashion-mnist (grey images)" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "q.onnx").exists()


def test_eval_of_a_file_that_is_not_onnx_is_one_line(tmp_path, capsys):
    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"\x08\x07not a protobuf at all" * 10)
    assert main(["eval", str(junk), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "is not an ONNX file" in err and len(err.strip().splitlines()) == 1
    assert main(["eval", str(tmp_path / "absent.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err


def tiny_onnx(path, in_chans: int, size: tuple[int, int]):
    """A crunet-labelled ONNX file without a model (the channel means as logits): eval's checks, without an export."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", in_chans, *size])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", in_chans])
    pool = helper.make_node("GlobalAveragePool", ["x"], ["p"])
    flat = helper.make_node("Flatten", ["p"], ["logits"])
    model = helper.make_model(helper.make_graph([pool, flat], "tiny", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    spec = {"in_chans": in_chans, "size": list(size), "mean": [0.5] * in_chans, "std": [0.25] * in_chans,
            "crop_pct": 1.0}
    helper.set_model_props(model, {"crunet.input": json.dumps(spec), "crunet.model": "tiny"})
    onnx.save(model, str(path))
    return path


def test_eval_of_a_file_the_data_cannot_feed_is_one_line(fmnist, tmp_path, capsys):
    wide = tiny_onnx(tmp_path / "wide.onnx", 1, (28, 32))  # crunet's pipelines crop squares
    assert main(["eval", str(wide), "--data", str(fmnist), "--workers", "0", "--subset", "8"]) == 2
    err = capsys.readouterr().err
    assert "takes 28x32 images" in err and "--input-size" in err and len(err.strip().splitlines()) == 1
    colour = tiny_onnx(tmp_path / "colour.onnx", 3, (28, 28))  # grey Fashion-MNIST cannot feed a colour model
    assert main(["eval", str(colour), "--data", str(fmnist), "--workers", "0", "--subset", "8"]) == 2
    err = capsys.readouterr().err
    assert "gives 1x28x28 images but" in err and "takes 3x28x28" in err and len(err.strip().splitlines()) == 1
    grey = tiny_onnx(tmp_path / "grey.onnx", 1, (28, 28))  # the right images, but 1 class for 10 labels
    assert main(["eval", str(grey), "--data", str(fmnist), "--workers", "0", "--subset", "8"]) == 2
    err = capsys.readouterr().err
    assert "labels run from 0 to" in err and "1 classes" in err and len(err.strip().splitlines()) == 1
