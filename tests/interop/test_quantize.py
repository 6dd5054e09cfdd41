"""int8 ONNX files: each weight quantized once (a shared basis too), the crunet metadata kept, close to the float32
file on the calibration data's kind of images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crunet.data import eval_shard, open_split
from crunet.errors import ConfigError, DataError
from crunet.interop.export import export_onnx
from crunet.interop.onnx_file import OnnxClassifier, OnnxInfo, read_onnx_info
from crunet.interop.quantize import calibration_batches, quantize_file
from crunet.layers.shared_basis import SharedBasis

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.mark.slow
def test_int8_file_quantizes_each_weight_once_and_follows_the_float_file(fmnist, tmp_path, trained_looking):
    model = trained_looking("dsfb_resnet32_s8u1", in_chans=1)
    fp32 = export_onnx(model, tmp_path / "m.onnx", (28, 28), metadata={"data_kind": "fashion-mnist"})
    int8 = quantize_file(fp32, tmp_path / "q.onnx", fmnist, images=64)
    params = sum(p.numel() for p in model.parameters())
    # 1 byte a weight; per output channel a float scale and a float bias: a fifth more in a model this narrow
    assert int8.stat().st_size <= 1.25 * params

    graph = onnx.load(str(int8)).graph
    weights = [onnx.numpy_helper.to_array(i) for i in graph.initializer if i.data_type == onnx.TensorProto.INT8]
    shared = [p for m in model.modules() if isinstance(m, SharedBasis) for p in m.parameters()]
    for tensor in shared:  # one int8 copy of each shared basis
        assert sum(w.shape == tuple(tensor.shape) for w in weights) == 1
    convs = sum(n.op_type == "Conv" for n in onnx.load(str(fp32)).graph.node)
    assert sum(w.ndim == 4 for w in weights) <= convs  # no weight quantized twice

    info = read_onnx_info(int8)
    assert info.quantization.startswith("int8") and info.in_chans == 1 and info.size == (28, 28)
    loader = open_split(fmnist, "val", info.data_spec(workers=0))
    x = next(loader.iterate(eval_shard(len(loader), 64), 0, train=False))[0]
    want, got = OnnxClassifier(fp32)(x), OnnxClassifier(int8)(x)
    assert (want.argmax(1) == got.argmax(1)).float().mean() >= 0.9
    assert float(torch.corrcoef(torch.stack([want.flatten(), got.flatten()]))[0, 1]) > 0.95


def _info(in_chans: int) -> OnnxInfo:
    """What a file of crunet_small trained on Fashion-MNIST says about its input (no file needed)."""
    return OnnxInfo("m.onnx", "crunet_small", in_chans, (28, 28), (0.286,) * in_chans, (0.353,) * in_chans, 1.0, 10,
                    "small", "", None, "fashion-mnist", None)


def test_calibration_batches_are_fixed_and_shaped_as_the_file_takes(fmnist, tmp_path):
    info = _info(1)
    one, two = (torch.cat(list(calibration_batches(info, fmnist, images=40, batch_size=16))) for _ in range(2))
    assert one.shape == (40, 1, 28, 28) and torch.equal(one, two)  # a fixed draw
    assert abs(float(one.mean())) < 1.5 and np.isfinite(one.numpy()).all()  # normalized, not raw 0..255 pixels
    with pytest.raises(ConfigError, match="--calibration-images"):
        next(calibration_batches(info, fmnist, images=0))
    with pytest.raises(DataError, match="gives 1x28x28 images but m.onnx takes 3x28x28"):
        next(calibration_batches(_info(3), fmnist, images=8))
    from tests.helpers import jpeg_folders

    with pytest.raises(DataError, match="is folder data but crunet_small trained on fashion-mnist"):
        next(calibration_batches(info, jpeg_folders(tmp_path / "photos"), images=8))
