"""Every shared model of the zoo exports to ONNX with each shared tensor stored once, within 1.10x of its parameter
bytes, with fewer BatchNormalization nodes than it has BNs, and computing what PyTorch computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import crunet
from crunet import count_parameters
from crunet.deploy import deploy
from crunet.errors import ConfigError
from crunet.interop.export import export_onnx, onnx_difference
from crunet.layers.shared_basis import SharedBasis
from crunet.layers.shared_factors import SharedFactors

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

SHARED = [name for name in crunet.list_models() if name.startswith(("crunet", "dsfb_"))]
FAST = ("crunet_small",)  # one small model in the fast suite (an export costs 5-7 s here); the rest are slow


def shared_tensors(model: nn.Module) -> list[torch.Tensor]:
    return [p for m in model.modules() if isinstance(m, (SharedBasis, SharedFactors)) for p in m.parameters()]


def _size(model: nn.Module) -> tuple[int, int]:
    side = max(32, model.min_input_size)  # the file's size does not depend on the input's
    return side, side


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in SHARED])
def test_onnx_stores_each_shared_tensor_once(name, tmp_path, trained_looking):
    model = trained_looking(name)
    shared = shared_tensors(model)
    assert shared, f"{name} shares nothing: SHARED lists the shared models"
    path = export_onnx(model, tmp_path / "m.onnx", _size(model))
    blob = path.read_bytes()
    proto = onnx.load(str(path))
    inits = [onnx.numpy_helper.to_array(i) for i in proto.graph.initializer]
    for tensor in shared:
        raw = tensor.detach().numpy()
        assert blob.count(raw.tobytes()) == 1  # once in the file: no copy, not even inside a joined tensor
        assert sum(a.shape == raw.shape and np.array_equal(a, raw) for a in inits) == 1  # as one initializer
    assert len(blob) <= 1.10 * 4 * count_parameters(model)
    bns = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(n.op_type == "BatchNormalization" for n in proto.graph.node) < bns  # folded where sharing allows
    assert not any(p.key.startswith("pkg.torch") for n in proto.graph.node for p in n.metadata_props)
    diff, scale = onnx_difference(model, path, input_size=_size(model))
    assert diff <= 1e-4 * max(1.0, scale)


@pytest.mark.slow
def test_deployed_models_export_as_deployed(tmp_path, trained_looking):
    model = trained_looking("dsfb_resnet32_s8u1")
    small = export_onnx(deploy(model, unshare=False, layout="channels_last"), tmp_path / "small.onnx")
    assert small.stat().st_size <= 1.10 * 4 * count_parameters(model)
    meta = {p.key: p.value for p in onnx.load(str(small)).metadata_props}
    assert meta["crunet.model"] == "dsfb_resnet32_s8u1" and meta["crunet.graph"] == "deployed"
    diff, scale = onnx_difference(model, small)
    assert diff <= 1e-4 * max(1.0, scale)
    with pytest.raises(ConfigError, match="deployed already"):
        export_onnx(deploy(model, layout="contiguous"), tmp_path / "x.onnx", graph="small")
    with pytest.raises(ConfigError, match="graph must be one of"):
        export_onnx(model, tmp_path / "x.onnx", graph="smallest")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.slow
def test_the_fast_graph_unrolls_sharing(tmp_path, trained_looking):
    model = trained_looking("dsfb_resnet32_s8u1")
    fast = export_onnx(deploy(model, layout="contiguous"), tmp_path / "fast.onnx")
    assert fast.stat().st_size > 1.5 * 4 * count_parameters(model)  # a folded copy of the shared basis per use
    diff, scale = onnx_difference(model, fast)
    assert diff <= 1e-4 * max(1.0, scale)
