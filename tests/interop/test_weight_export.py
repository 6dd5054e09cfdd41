"""safetensors, ONNX and TorchScript export, as a library and as ``crunet export``, and torch.hub's entry points."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import crunet
from crunet.cli.main import main
from crunet.errors import FileFormatError
from crunet.interop.export import check_onnx, example_input, export_onnx, export_torchscript
from crunet.interop.weights import WeightsError, load_weights, read_weights, save_weights
from crunet.train.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[2]
DSFB_ONNX = "dsfb_resnet50_shared"


def randomized(model: nn.Module) -> nn.Module:
    """Non-trivial weights and BN statistics, so that an export that drops or folds something wrongly shows up
    (a freshly initialized head gives near-zero logits, which every export would match)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(1 + 0.2 * torch.randn(module.weight.shape, generator=gen))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
                module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=gen))
            elif isinstance(module, nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) / module.in_features ** 0.5)
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
    return model.eval()


def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def test_safetensors_holds_each_shared_tensor_once_and_loads_back_strictly(tmp_path):
    model = randomized(crunet.create_model("crunet_small", num_classes=10, in_chans=1))
    path = save_weights(model, tmp_path / "w.safetensors")
    state = load_file(str(path))
    assert set(state) == set(model.state_dict())
    assert [k for k in state if ".factors." in k] == ["stages.1.factors.0.reduce", "stages.1.factors.0.spatial",
                                                     "stages.2.factors.0.reduce", "stages.2.factors.0.spatial"]
    assert not any(".units." in k and ("reduce" in k or "spatial" in k) for k in state)  # users hold no copies
    fresh = crunet.create_model("crunet_small", num_classes=10, in_chans=1)
    fresh.load_state_dict(state, strict=True)
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(_outputs(fresh, x), _outputs(model, x))
    loaded = load_weights(path)  # the metadata names the model, its classes and channels
    assert (loaded.name, loaded.num_classes, loaded.in_chans) == ("crunet_small", 10, 1)
    torch.testing.assert_close(_outputs(loaded, x), _outputs(model, x))


def test_loading_refuses_a_file_of_another_model(tmp_path):
    path = save_weights(crunet.create_model("crunet_small", num_classes=10), tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="different model.*missing"):
        load_weights(path, "preresnext_small")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="not a safetensors file"):
        read_weights(tmp_path / "junk.safetensors")


@pytest.mark.parametrize("entry, message", [
    ("{mean: 0.5}", "is not JSON"),
    ('[0.5, 0.5]', "must be a JSON object of mean, std, crop_pct"),
    ('{"mean": [0.5], "scale": 2}', "must be a JSON object"),
    ('{"mean": [0.5, 0.5]}', "mean must be 1 or 3 finite numbers"),
    ('{"std": [0.5, 0.0, 0.5]}', "std must be 1 or 3 finite numbers above 0"),
    ('{"mean": [0.5, 0.5, 0.5], "std": [0.5]}', "has 3 means and 1 stds"),
    ('{"crop_pct": 1.5}', r"crop_pct must be a number in \(0, 1\]"),
])
def test_a_malformed_normalization_entry_is_refused_in_one_line(tmp_path, entry, message):
    from crunet.train.distill import load_teacher

    model = crunet.create_model("crunet_small", num_classes=10, in_chans=1)
    path = save_weights(model, tmp_path / "w.safetensors", extra={"normalization": entry})
    with pytest.raises(WeightsError, match=f"w.safetensors: its normalization metadata {message}") as err:
        read_weights(path)
    assert "\n" not in str(err.value)
    with pytest.raises(FileFormatError, match=f"--teacher .*w.safetensors: its normalization metadata {message}"):
        load_teacher(str(path), 10, 1, (0.5,), (0.5,))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["crunet56", DSFB_ONNX])
def test_onnx_matches_pytorch_in_onnxruntime_with_dynamic_batch(name, tmp_path):
    pytest.importorskip("onnxruntime")
    model = randomized(crunet.create_model(name))  # a model name that disappears fails here, it is not skipped
    path = export_onnx(model, tmp_path / f"{name}.onnx")
    import onnx

    proto = onnx.load(str(path))
    assert max(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")) >= 17
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a symbolic batch dimension
    for batch in (1, 3):
        assert check_onnx(model, path, batch=batch) < 1e-4


def test_torchscript_runs_any_batch_and_matches(tmp_path):
    model = randomized(crunet.create_model("crunet_small", num_classes=10))
    path = export_torchscript(model, tmp_path / "m.pt")
    scripted = torch.jit.load(str(path))
    for batch in (1, 4):
        x = example_input(model, batch, seed=batch)
        torch.testing.assert_close(scripted(x), _outputs(model, x))


def test_cli_export_from_training_checkpoint_and_from_safetensors(tmp_path, capsys):
    model = randomized(crunet.create_model("crunet_small", num_classes=10, in_chans=1))
    ckpt = save_checkpoint({"model_name": "crunet_small", "num_classes": 10, "in_chans": 1,
                            "model": model.state_dict(), "ema": {}}, tmp_path / "last.pt")
    out = tmp_path / "w.safetensors"
    assert main(["export", "--checkpoint", str(ckpt), "--format", "safetensors", "--out", str(out)]) == 0
    assert "crunet_small" in capsys.readouterr().out
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(_outputs(load_weights(out), x), _outputs(model, x))

    plain = tmp_path / "plain.safetensors"  # written by someone else: no metadata, so --model names it
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(plain))
    assert main(["export", "--checkpoint", str(plain), "--format", "torchscript", "--out", str(tmp_path / "m.pt")]) == 2
    assert "--model NAME" in capsys.readouterr().err
    args = ["export", "--checkpoint", str(plain), "--model", "crunet_small", "--format", "torchscript",
            "--out", str(tmp_path / "m.pt")]
    assert main(args) == 0
    torch.testing.assert_close(torch.jit.load(str(tmp_path / "m.pt"))(x), _outputs(model, x))

    assert main(["export", "--checkpoint", str(ckpt), "--ema", "--format", "onnx", "--out", "x.onnx"]) == 2
    assert "no EMA weights" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_export_onnx_checks_against_pytorch(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    model = randomized(crunet.create_model("crunet_small", num_classes=10))
    weights = save_weights(model, tmp_path / "w.safetensors")
    assert main(["export", "--checkpoint", str(weights), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "max |difference|" in out and (tmp_path / "m.onnx").is_file()


def _hubconf():
    spec = importlib.util.spec_from_file_location("hubconf", REPO / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_an_onnx_file_exported_from_an_exported_weights_file_keeps_the_runs_normalization(tmp_path, capsys):
    pytest.importorskip("onnxscript")
    from crunet.interop.onnx_file import read_onnx_info

    model = crunet.create_model("crunet_small", num_classes=10, in_chans=1)
    config = {"mean": [0.3], "std": [0.6], "crop_pct": 0.9}  # a recipe's, not crunet_small's
    ckpt = save_checkpoint({"config": config, "model_name": "crunet_small", "num_classes": 10, "in_chans": 1,
                            "model": model.state_dict(), "ema": {}}, tmp_path / "last.pt")
    weights = tmp_path / "w.safetensors"
    assert main(["export", "--checkpoint", str(ckpt), "--format", "safetensors", "--out", str(weights)]) == 0
    onnx = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", str(weights), "--format", "onnx", "--no-check", "--out", str(onnx)]) == 0
    info = read_onnx_info(onnx)
    assert (info.mean, info.std, info.crop_pct) == ((0.3,), (0.6,), 0.9)


def test_hubconf_exposes_every_registered_builder():
    hub = _hubconf()
    assert hub.dependencies == ["torch"]
    entries = sorted(n for n in dir(hub) if callable(getattr(hub, n)) and not n.startswith("_"))
    assert entries == crunet.list_models()
    assert hub.crunet56.__doc__ == crunet.models.get_builder("crunet56").__doc__


def test_torch_hub_load_local(tmp_path):
    model = torch.hub.load(str(REPO), "crunet_small", source="local", num_classes=10)
    assert model.name == "crunet_small" and model.num_classes == 10
    trained = randomized(crunet.create_model("crunet_small", num_classes=10))
    weights = save_weights(trained, tmp_path / "w.safetensors")
    loaded = torch.hub.load(str(REPO), "crunet_small", source="local", weights=str(weights))
    x = torch.randn(2, 3, 28, 28)
    torch.testing.assert_close(_outputs(loaded, x), _outputs(trained, x))
    with pytest.raises(ValueError, match="no hosted weights"):
        torch.hub.load(str(REPO), "crunet56", source="local", pretrained=True)
