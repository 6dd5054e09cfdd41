"""int8 ONNX files: onnxruntime's static quantization (QDQ format, int8 weights per output channel, uint8
activations with ranges calibrated by min/max; the first convolution kept float32) of a float32
file ``export_onnx`` wrote, calibrated on training images fed as in training (``calibration_batches``: the file's
own channels, size and normalization, the evaluation transform, a fixed draw).

A shared tensor stays one initializer: the quantizer quantizes each initializer once, whatever reads it.
"""

from __future__ import annotations

import itertools
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from crunet.data import detect_kind, eval_shard, open_split
from crunet.errors import ConfigError, DataError
from crunet.interop.onnx_file import META, OnnxInfo, read_onnx_info, require_onnxruntime
from crunet.io.atomic import atomic_path

DEFAULT_IMAGES = 256
QUANTIZED_OPS = None  # onnxruntime's QDQ list: Conv, Gemm, BatchNormalization, Relu, Pad, Slice, Reshape...
QUANTIZATION = ("int8 static QDQ: weights int8 per channel, activations uint8 per tensor (min/max over {n} images); "
                "first convolution float32")


def calibration_batches(info: OnnxInfo, data: str | os.PathLike | None, images: int = DEFAULT_IMAGES,
                        batch_size: int = 32, workers: int = 0) -> Iterator[torch.Tensor]:
    """``images`` training images of ``data`` (the same ones on every call: a fixed shuffle), with the evaluation
    transform at the file's channels, size and normalization, in batches. ``data`` of another kind than the model
    trained on, or whose images do not have the file's channels and size, is refused in one line."""
    if images < 1:
        raise ConfigError(f"--calibration-images must be 1 or more, got {images}")
    check_calibration_kind(data, info.data_kind, info.model, info.in_chans)
    spec = info.data_spec(augment="none", workers=workers)
    spec.resize = round(spec.size / spec.crop_pct)  # the evaluation transform's resize, on training images
    loader = open_split(data, "train", spec)
    loader = loader.subset(min(images, len(loader)))
    for i, (x, _, _) in enumerate(loader.iterate(eval_shard(len(loader), batch_size), 0, train=True)):
        if i == 0:
            info.check_batch(x, f"the calibration data {data or '(default)'}")
        yield x


def check_calibration_kind(data: str | os.PathLike | None, trained_on: str | None, model: str, in_chans: int) -> None:
    """Calibration data must be of the kind the model trained on (when that is known): grey Fashion-MNIST is no
    calibration for a colour model, nor a folder of colour photos for a grey one."""
    kind = detect_kind(data)
    if trained_on and kind != trained_on:
        raise DataError(f"the calibration data {data or '(default)'} is {kind} data but {model} trained on "
                        f"{trained_on} ({'grey' if in_chans == 1 else 'colour'} images): calibrate on the training "
                        f"data (--calibration-data)")


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over our batches."""

    def __init__(self, name: str, batches: Iterator[torch.Tensor]):
        self.name, self.batches = name, batches

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self.batches, None)
        return None if x is None else {self.name: np.ascontiguousarray(x.float().numpy())}


def quantize_int8(fp32_path: str | os.PathLike, out_path: str | os.PathLike,
                  batches: Iterator[torch.Tensor]) -> Path:
    """The float32 ONNX file at ``fp32_path`` as an int8 file at ``out_path`` (its crunet metadata kept, plus
    ``crunet.quantization``), calibrated on ``batches``."""
    require_onnxruntime()
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    counted = _Counted(batches)
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="crunet-int8-") as tmp:
        raw = Path(tmp) / "int8.onnx"
        root, level = logging.getLogger(), logging.getLogger().level
        root.setLevel(logging.ERROR)  # the quantizer's advice (pre-processing, 1-d BN weights) goes to the root logger
        try:
            quantize_static(str(fp32_path), str(raw), _Reader("x", iter(counted)), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=QUANTIZED_OPS,
                            nodes_to_exclude=_kept_float(str(fp32_path)), extra_options={"QuantizeBias": False})
        finally:
            root.setLevel(level)
        if not counted.images:
            raise DataError("no calibration images: --calibration-data holds no training images")
        model = onnx.load(str(raw))
    source = onnx.load(str(fp32_path), load_external_data=False)
    del model.metadata_props[:]
    for prop in source.metadata_props:
        model.metadata_props.add(key=prop.key, value=prop.value)
    model.metadata_props.add(key=META + "quantization", value=QUANTIZATION.format(n=counted.images))
    compact_names(model.graph)
    with atomic_path(out_path) as tmp_out:
        onnx.save(model, str(tmp_out))
    return out_path


def _kept_float(path: str) -> list[str]:
    """The first convolution (on the image) stays float32: it holds a sliver of the weights, and quantizing it cost
    crunet_small 0.9 points of top-1 on Fashion-MNIST (92.96 -> 92.06; kept float: 92.93), whatever the calibration
    (min/max, percentile, entropy; 256 or 1024 images); the classifier's quantization costs nothing measurable."""
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    image = graph.input[0].name
    return [n.name for n in graph.node if n.op_type == "Conv" and image in n.input]


def compact_names(graph) -> None:
    """Short names for every tensor but the graph's input and output, no node names, no intermediate shapes, no
    Conv attribute that says its default.
    QDQ doubles the nodes and the quantizer names each value after its source ("..._DequantizeLinear_Output"):
    written out, the names are a quarter of a small int8 file; onnxruntime needs none of them."""
    _drop_zero_weight_offsets(graph)
    keep = {v.name for v in (*graph.input, *graph.output)}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        if name not in names:
            names[name] = next(n for i in itertools.count(len(names)) if (n := "_" + np.base_repr(i, 36)) not in keep)
        return names[name]

    for init in graph.initializer:
        init.name = short(init.name)
    for node in graph.node:
        node.name = ""
        if node.op_type == "Conv":  # attributes that say their default (kernel_shape: the weight's own shape)
            kept = [a for a in node.attribute if not (a.name == "kernel_shape" or a.name == "group" and a.i == 1
                                                      or a.name in ("dilations", "strides") and set(a.ints) == {1}
                                                      or a.name == "pads" and set(a.ints) == {0})]
            del node.attribute[:]
            node.attribute.extend(kept)
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    del graph.value_info[:]


def _drop_zero_weight_offsets(graph) -> None:
    """Symmetric int8 weights have zero points of 0, one per channel: DequantizeLinear takes 0 when none is given."""
    import onnx

    inits = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and len(node.input) == 3 and node.input[2] in inits:
            zero = inits[node.input[2]]
            if zero.data_type == onnx.TensorProto.INT8 and not onnx.numpy_helper.to_array(zero).any():
                del node.input[2]
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


class _Counted:
    """Passes batches through, counting the images."""

    def __init__(self, batches: Iterator[torch.Tensor]):
        self.batches, self.images = batches, 0

    def __iter__(self) -> Iterator[torch.Tensor]:
        for x in self.batches:
            self.images += len(x)
            yield x


def quantize_file(fp32_path: str | os.PathLike, out_path: str | os.PathLike, data: str | os.PathLike | None,
                  images: int = DEFAULT_IMAGES) -> Path:
    """``quantize_int8`` calibrated on ``images`` training images of ``data`` (``calibration_batches``)."""
    info = read_onnx_info(fp32_path)
    return quantize_int8(fp32_path, out_path, calibration_batches(info, data, images))
