"""The released MXNet CRU-Net checkpoints: the numpy reader, the name mapping, the refusals, ``crunet convert-mxnet``.

Two kinds of files are read here:
- ``data/tiny-*`` and ``data/dtypes.nd`` were written by MXNet 1.9.1 itself (``mx.model.save_checkpoint``,
  ``mx.nd.save``; a side environment, not a dependency), with the logits MXNet computed for ``tiny``;
- the full-size checkpoints are written by ``write_ndarray_list`` below, a small writer that follows MXNet's
  documented layout (``NDArray::Save`` in ``src/ndarray/ndarray.cc``); it reproduces MXNet's own ``tiny-0000.params``
  byte for byte, which is what licenses it for the files MXNet cannot be asked to write here.
The original download links of the released weights are dead, so no real CRU-Net file is tested.
"""

from __future__ import annotations

import functools
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import crunet
from crunet.cli.main import main
from crunet.interop.mxnet_weights import (
    MXNetFormatError,
    convert_checkpoint,
    read_checkpoint,
    read_ndarray_list,
    released_names,
)
from crunet.interop.weights import load_weights, read_safetensors

DATA = Path(__file__).parent / "data"
FLAGS = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.float16): 2, np.dtype(np.uint8): 3,
         np.dtype(np.int32): 4, np.dtype(np.int8): 5, np.dtype(np.int64): 6}


def write_ndarray_list(path: Path, arrays: dict[str, np.ndarray], version: str = "v2", stype: int = 0) -> None:
    """MXNet's NDArray list layout: list magic, reserved, the arrays, the names (see mxnet_weights' docstring)."""
    with open(path, "wb") as f:  # written piece by piece: a full-size checkpoint's 100 MB are not copied
        f.write(struct.pack("<QQQ", 0x112, 0, len(arrays)))
        for value in arrays.values():
            value = np.ascontiguousarray(value)
            if version == "legacy":
                f.write(struct.pack(f"<I{value.ndim}I", value.ndim, *value.shape))
            else:
                magic = {"v1": 0xF993FAC8, "v2": 0xF993FAC9, "v3": 0xF993FACA}[version]
                f.write(struct.pack("<I", magic))
                if version != "v1":
                    f.write(struct.pack("<i", stype))
                f.write(struct.pack(f"<i{value.ndim}q", value.ndim, *value.shape))
            f.write(struct.pack("<iii", 1, 0, FLAGS[value.dtype]))  # cpu(0), dtype
            f.write(np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<")).data)
        f.write(struct.pack("<Q", len(arrays)))
        for name in arrays:
            encoded = name.encode()
            f.write(struct.pack("<Q", len(encoded)) + encoded)


def write_symbol(path: Path, params: list[str], eps: float = 1e-3, fix_gamma: bool = False) -> None:
    """A -symbol.json with a variable per parameter and a BatchNorm node per BN, as MXNet writes them."""
    nodes = [{"op": "null", "name": "data", "inputs": []}]
    index = {}
    for name in params:
        index[name] = len(nodes)
        nodes.append({"op": "null", "name": name, "inputs": []})
    for name in params:
        if name.endswith("_gamma"):
            base = name[: -len("_gamma")]
            stats = ("gamma", "beta", "moving_mean", "moving_var")
            inputs = [[0, 0, 0]] + [[index[f"{base}_{s}"], 0, 0] for s in stats]
            nodes.append({"op": "BatchNorm", "name": base, "inputs": inputs,
                          "attrs": {"eps": str(eps), "fix_gamma": str(fix_gamma), "momentum": "0.9"}})
    path.write_text(json.dumps({"nodes": nodes, "arg_nodes": list(range(len(params) + 1)), "heads": [[0, 0, 0]],
                                "attrs": {"mxnet_version": ["int", 10901]}}))


def randomized_state(model) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        if key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(value.shape, generator=gen)
        elif key.endswith(("bn.weight",)):
            state[key] = 1 + 0.2 * torch.randn(value.shape, generator=gen)
        else:
            fan_in = value[0].numel() if value.dim() > 1 else 10
            state[key] = torch.randn(value.shape, generator=gen) / fan_in ** 0.5
    return state


@functools.cache
def released_state(name: str, num_classes: int) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Our names -> the authors' names, and random weights (from a seeded generator: the same on every call), built
    once per model for the module's several checkpoints."""
    model = crunet.create_model(name, num_classes=num_classes)
    return released_names(model), randomized_state(model)


def write_released(tmp_path: Path, name: str, num_classes: int = 1000, drop: str | None = None,
                   **symbol) -> tuple[Path, dict[str, torch.Tensor]]:
    """A checkpoint as the authors' training wrote it (``arg:``/``aux:`` names) from random weights of our model."""
    names, state = released_state(name, num_classes)
    arrays = {}
    for ours, theirs in names.items():
        if theirs == drop:
            continue
        kind = "aux" if theirs.endswith(("_moving_mean", "_moving_var")) else "arg"
        arrays[f"{kind}:{theirs}"] = state[ours].numpy()
    prefix = tmp_path / name
    write_ndarray_list(Path(f"{prefix}-0000.params"), arrays)
    write_symbol(Path(f"{prefix}-symbol.json"), [k.split(":", 1)[1] for k in arrays], **symbol)
    return prefix, state


def test_reader_reads_mxnet_written_files_and_the_writer_reproduces_them(tmp_path):
    arrays = read_ndarray_list(DATA / "dtypes.nd")
    assert {k: (v.dtype.name, v.tolist()) for k, v in arrays.items()} == {
        "f16": ("float16", [1.5, -2.0]), "f64": ("float64", [[1.0, 2.0], [3.0, 4.0]]), "i32": ("int32", [7, 8, 9]),
        "u8": ("uint8", [255]), "i64": ("int64", [-5]), "one": ("float32", [3.25])}
    raw = read_ndarray_list(DATA / "tiny-0000.params")
    assert list(raw)[:2] == ["arg:conv1_x_1__conv_weight", "arg:conv1_x_1__relu-sp__bn_gamma"]
    write_ndarray_list(tmp_path / "copy.params", raw)
    assert (tmp_path / "copy.params").read_bytes() == (DATA / "tiny-0000.params").read_bytes()
    write_ndarray_list(tmp_path / "copy.nd", arrays)
    assert (tmp_path / "copy.nd").read_bytes() == (DATA / "dtypes.nd").read_bytes()


@pytest.mark.parametrize("version", ["v1", "v2", "v3", "legacy"])
def test_reader_reads_every_ndarray_version(tmp_path, version):
    arrays = {"a": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "b": np.array([1.5], np.float64)}
    write_ndarray_list(tmp_path / "x.params", arrays, version=version)
    got = read_ndarray_list(tmp_path / "x.params")
    assert list(got) == ["a", "b"] and all(np.array_equal(got[k], arrays[k]) for k in arrays)


def test_tiny_mxnet_network_computed_from_what_we_read_matches_mxnet():
    """BatchNorm semantics as MXNet applies them: eps from the symbol, fix_gamma (MXNet's default) meaning gamma=1."""
    params, norms, variables = read_checkpoint(DATA / "tiny")
    assert norms == {"conv1_x_1__relu-sp__bn_gamma": {"eps": 1e-3, "fix_gamma": False},
                     "fixed__bn_gamma": {"eps": 1e-3, "fix_gamma": True}}
    assert set(params) | {"data"} == variables
    p = {k: torch.from_numpy(v) for k, v in params.items()}
    expected = np.load(DATA / "tiny-expected.npz")

    def bn(x, name):
        gamma = torch.ones(4) if norms[f"{name}_gamma"]["fix_gamma"] else p[f"{name}_gamma"]
        return F.batch_norm(x, p[f"{name}_moving_mean"], p[f"{name}_moving_var"], gamma, p[f"{name}_beta"],
                            eps=norms[f"{name}_gamma"]["eps"])

    x = F.conv2d(torch.from_numpy(expected["x"]), p["conv1_x_1__conv_weight"], padding=1)
    x = F.relu(bn(bn(x, "conv1_x_1__relu-sp__bn"), "fixed__bn")).mean((2, 3))
    logits = F.linear(x, p["fc6_weight"], p["fc6_bias"])
    np.testing.assert_allclose(logits.numpy(), expected["logits"], rtol=1e-5, atol=1e-5)


def test_released_names_follow_the_released_code():
    names56 = released_names(crunet.create_model("crunet56"))
    model116 = crunet.create_model("crunet116", num_classes=365)
    names116 = released_names(model116)
    for names in (names56, names116):
        assert len(set(names.values())) == len(names)  # one released name per tensor, none reused
    state56 = crunet.create_model("crunet56").state_dict()
    assert set(names56) == {k for k in state56 if not k.endswith("num_batches_tracked")}  # every tensor mapped
    assert names56["stages.2.factors.0.reduce"] == "conv4_x__x_1x1_bases[dim3]_weight"
    assert names56["stages.2.factors.0.spatial"] == "conv4_x__x_3x3_bases[dim21]_weight"
    assert names56["stages.2.units.0.proj"] == "conv4_x__1_c1x1-w_weight"
    assert names56["stages.2.units.0.proj_in_norm.bn.weight"] == "conv4_x__1_c1x1-w(s/1)__bn__bn_gamma"
    assert names56["stages.2.units.0.proj_short_norm.bn.running_var"] == "conv4_x__1_c1x1-w(s/key)__bn__bn_moving_var"
    assert names56["stages.2.units.3.conv_mix.conv.weight"] == "conv4_x__4_c1x1-b__conv_weight"
    assert names56["stages.0.units.0.shortcut.conv.weight"] == "conv2_x__1_c1x1-w(s/1)__conv_weight"
    assert names56["stages.1.units.0.shortcut.norm.bn.running_mean"] == "conv3_x__1_c1x1-w(s/2)__bn__bn_moving_mean"
    assert names56["stages.1.units.2.conv2.conv.weight"] == "conv3_x__3_c3x3-b__conv_weight"
    assert names56["stem.0.weight"] == "conv1_x_1__conv_weight"
    assert names56["final_norm.bn.bias"] == "conv5_x_x__relu-sp__bn_beta"
    assert (names56["head.fc.weight"], names56["head.fc.bias"]) == ("fc6_weight", "fc6_bias")
    assert names116["stages.1.factors.0.reduce"] == "conv3_x__x_1x1_bases[dim3]_weight"  # one group in conv3
    assert [names116[f"stages.2.factors.{k}.spatial"] for k in range(3)] == [
        "conv4_x__(1)_3x3_bases[dim21]_weight", "conv4_x__(2)_3x3_bases[dim21]_weight",
        "conv4_x__(3)_3x3_bases[dim21]_weight"]
    assert names116["stages.2.units.17.conv3.conv.weight"] == "conv4_x__18_c1x1-c__conv_weight"
    assert not any("c3x3-b" in v for k, v in names116.items() if k.startswith("stages.2."))  # nothing between W1, W2


@pytest.mark.parametrize(("name", "num_classes"), [("crunet56", 1000),
                                                   pytest.param("crunet116", 365, marks=pytest.mark.slow)])
def test_convert_maps_every_parameter_and_statistic(tmp_path, name, num_classes):
    prefix, state = write_released(tmp_path, name, num_classes)
    model = convert_checkpoint(prefix, name)
    assert model.num_classes == num_classes and not model.training
    got = model.state_dict()
    for key, value in state.items():
        torch.testing.assert_close(got[key], value, msg=key)
    eps = {m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert eps == {1e-3}
    reference = crunet.create_model(name, num_classes=num_classes)
    reference.load_state_dict(state, strict=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference.eval()(x))


def test_convert_refuses_what_does_not_fit(tmp_path):
    prefix, _ = write_released(tmp_path, "crunet56", drop="conv4_x__3_c1x1-b__conv_weight")
    with pytest.raises(MXNetFormatError, match=r"missing from the .params \(1\): conv4_x__3_c1x1-b__conv_weight"):
        convert_checkpoint(prefix, "crunet56")
    prefix, _ = write_released(tmp_path, "crunet56")
    with pytest.raises(MXNetFormatError, match=r"does not fit crunet116: missing from the .params \(233\)"):
        convert_checkpoint(prefix, "crunet116")
    with pytest.raises(MXNetFormatError, match="must be one of crunet56, crunet116"):
        convert_checkpoint(prefix, "preresnet50")

    arrays = read_ndarray_list(Path(f"{prefix}-0000.params"))
    arrays["arg:conv4_x__x_1x1_bases[dim3]_weight"] = np.zeros((624, 1024, 1, 1), np.float32)  # the paper's 624
    arrays["arg:conv2_x__9_c1x1-a__conv_weight"] = np.zeros((1,), np.float32)
    write_ndarray_list(Path(f"{prefix}-0000.params"), arrays)
    with pytest.raises(MXNetFormatError, match=r"not part of crunet56 \(1\): conv2_x__9_c1x1-a__conv_weight"):
        convert_checkpoint(prefix, "crunet56")
    del arrays["arg:conv2_x__9_c1x1-a__conv_weight"]
    write_ndarray_list(Path(f"{prefix}-0000.params"), arrays)
    with pytest.raises(MXNetFormatError, match=r"conv4_x__x_1x1_bases\[dim3\]_weight \(624, 1024, 1, 1\) -> "
                                               r"stages.2.factors.0.reduce \(640, 1024, 1, 1\)"):
        convert_checkpoint(prefix, "crunet56")


def test_convert_applies_fix_gamma_and_refuses_another_eps(tmp_path):
    prefix, state = write_released(tmp_path, "crunet56", fix_gamma=True)
    model = convert_checkpoint(prefix, "crunet56")
    assert torch.equal(model.stem[1].bn.weight, torch.ones(64))  # MXNet ignored the stored gamma
    assert torch.equal(model.stem[1].bn.bias, state["stem.1.bn.bias"])
    prefix, _ = write_released(tmp_path, "crunet56", eps=2e-5)
    with pytest.raises(MXNetFormatError, match=r"eps \[2e-05\].*bn_eps="):
        convert_checkpoint(prefix, "crunet56")


def test_reader_refuses_broken_files(tmp_path):
    bad = tmp_path / "bad.params"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(MXNetFormatError, match="not an MXNet NDArray file"):
        read_ndarray_list(bad)
    good = (DATA / "tiny-0000.params").read_bytes()
    bad.write_bytes(good[:300])
    with pytest.raises(MXNetFormatError, match="ends early"):
        read_ndarray_list(bad)
    write_ndarray_list(bad, {"a": np.zeros(3, np.float32)}, stype=1)
    with pytest.raises(MXNetFormatError, match="sparse"):
        read_ndarray_list(bad)
    (tmp_path / "bad-0000.params").write_bytes(good)
    with pytest.raises(MXNetFormatError, match="symbol.json is needed"):
        read_checkpoint(tmp_path / "bad")


def test_cli_convert_mxnet_writes_weights_that_load_strictly(tmp_path, capsys):
    prefix, state = write_released(tmp_path, "crunet56")
    out = tmp_path / "crunet56.safetensors"
    assert main(["convert-mxnet", str(prefix), "--model", "crunet56", "--out", str(out)]) == 0
    assert "0.0167" in capsys.readouterr().out
    tensors, meta = read_safetensors(out)
    assert meta["model"] == "crunet56" and meta["source"].startswith("mxnet:")
    assert not any(".units." in k and k.endswith(("reduce", "spatial")) for k in tensors)  # shared tensors once
    model = load_weights(out)
    assert model.pretrained_cfg["mean"] == pytest.approx((124 / 255, 117 / 255, 104 / 255))
    torch.testing.assert_close(model.stages[2].factors[0].reduce, state["stages.2.factors.0.reduce"])
    assert main(["convert-mxnet", str(tmp_path / "nothing"), "--model", "crunet56", "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
