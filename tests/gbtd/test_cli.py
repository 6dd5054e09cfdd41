"""crunet gbtd MODEL and crunet factorize, through the command line's entry point."""

import pytest
import torch
from safetensors.torch import save_file

import crunet
from crunet.cli.main import main
from crunet.gbtd.summary import stage_summaries
from crunet.interop.weights import load_weights, read_weights, save_weights


def _row(out, stage):
    line = next(line for line in out.splitlines() if line.startswith(stage + " "))
    return line.split()


def test_gbtd_prints_every_stage_with_its_factors_and_compression(capsys):
    assert main(["gbtd", "crunet_small"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("stage"))
    assert header.split() == ["stage", "units", "R", "d3*", "d4*", "shared", "factors", "dense", "X*", "ratio"]
    conv2, conv3 = _row(out, "conv2"), _row(out, "conv3")
    assert conv2[1:5] == ["2", "8", "4", "4"] and conv2[5] == "nothing"
    width = crunet.models.small.crunet_small_width()
    assert conv3[1:5] == ["3", str(width), "1", "1"] and "A3+G by 3 units in 1 group(s)" in out
    # factors: the shared A3 and G once (128 x width + 9 x width) and the three units' A4 (128 x width)
    assert conv3[-3] == f"{128 * width + 9 * width + 3 * 128 * width:,}"
    assert conv3[-2] == f"{3 * 9 * 128 * 128:,}"


def test_stage_summaries_count_shared_factors_once():
    model = crunet.create_model("crunet_small").eval()
    unshared = crunet.create_model("preresnext_small").eval()
    for s in stage_summaries(unshared):
        assert s.sharing_groups == 0 and s.compression > 1
    conv4 = stage_summaries(model)[2]
    shared = model.stages[2].factors[0]
    a4 = sum(u.conv3.conv.weight.shape[0] * u.width for u in model.stages[2].units)
    assert conv4.factor_params == shared.reduce.numel() + shared.spatial.numel() + a4


def test_gbtd_unknown_model_is_one_line(capsys):
    assert main(["gbtd", "resnot50"]) == 2
    assert "unknown model 'resnot50'" in capsys.readouterr().err


def test_gbtd_of_a_model_without_gbtd_units_is_one_line_and_prints_no_table(capsys):
    assert main(["gbtd", "mobilenetv2"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "mobilenetv2 has no stages of GBTD residual units" in captured.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    model = crunet.create_model("preresnext_small", num_classes=10, in_chans=1)
    folder = tmp_path_factory.mktemp("ckpt")
    save_file(model.state_dict(), str(folder / "w.safetensors"))
    torch.save({"format": "crunet-checkpoint-v1", "model_name": "preresnext_small", "num_classes": 10,
                "in_chans": 1, "model": model.state_dict(), "classes": [f"class {i}" for i in range(10)],
                "img_size": 28, "config": {"mean": [0.5], "std": [0.25]}}, folder / "last.pt")
    return model, folder


@pytest.mark.parametrize("source", ["safetensors", "checkpoint"])
def test_factorize_writes_a_cru_model_and_reports(trained, capsys, source):
    model, folder = trained
    out = folder / f"cru-{source}.safetensors"
    args = ["--checkpoint", str(folder / "w.safetensors"), "--model", "preresnext_small"] if source == "safetensors" \
        else ["--checkpoint", str(folder / "last.pt")]
    assert main(["factorize", *args, "--stages", "conv3", "--iterations", "3", "--restarts", "0",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    cru = load_weights(out).eval()  # an ordinary crunet weights file: the source model with CRU stages
    assert cru.name == "preresnext_small" and [s.shared for s in cru.cfg.stages] == [False, True, False]
    assert cru.stages[1].factors and all(u.factors is cru.stages[1].factors[0] for u in cru.stages[1].units)
    before, after = sum(p.numel() for p in model.parameters()), sum(p.numel() for p in cru.parameters())
    assert f"{before:,} params" in text and f"{after:,} params" in text
    assert "conv3 units 1-3: relative reconstruction error per unit [" in text
    assert cru(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    written = read_weights(out)
    if source == "checkpoint":  # what predict and eval answer with travels on
        assert written.classes == [f"class {i}" for i in range(10)] and written.img_size == 28
        assert written.normalization == {"mean": [0.5], "std": [0.25]}
    else:
        assert (written.classes, written.img_size, written.normalization) == (None, None, {})


def test_a_factorized_file_is_read_and_exported_by_the_commands(trained, tmp_path, capsys):
    _, folder = trained
    out = tmp_path / "cru.safetensors"
    assert main(["factorize", "--checkpoint", str(folder / "last.pt"), "--stages", "conv3,conv4", "--iterations",
                 "2", "--restarts", "0", "--out", str(out)]) == 0
    assert main(["export", "--checkpoint", str(out), "--format", "torchscript", "--out",
                 str(tmp_path / "cru.pt")]) == 0
    scripted = torch.jit.load(str(tmp_path / "cru.pt"))
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(scripted(x), load_weights(out)(x), atol=1e-5)


def test_factorize_user_errors_are_one_line(trained, capsys, tmp_path):
    _, folder = trained
    cases = [
        (["--checkpoint", str(folder / "w.safetensors")], "pass the model name (--model NAME)"),
        (["--checkpoint", str(tmp_path / "none.pt")], "does not exist"),
        (["--checkpoint", str(folder / "last.pt"), "--stages", "conv9"], "no stage 'conv9'"),
        (["--checkpoint", str(folder / "w.safetensors"), "--model", "crunet_small"],
         "was written by a different model than crunet_small"),
        (["--checkpoint", str(folder / "r32.safetensors")], "resnet32_cifar is not a pre-activation network"),
    ]
    save_weights(crunet.create_model("resnet32_cifar", num_classes=10, in_chans=1), folder / "r32.safetensors")
    for args, message in cases:
        stages = [] if "--stages" in args else ["--stages", "conv3"]
        assert main(["factorize", *args, *stages, "--out", str(tmp_path / "x.safetensors")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
