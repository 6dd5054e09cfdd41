"""An ONNX file crunet wrote, read back: what it takes (``OnnxInfo``, from the ``crunet.*`` metadata that
``export_onnx`` writes) and a module that runs it in onnxruntime (``OnnxClassifier``), so that ``crunet eval`` and the
int8 calibration feed it the data as the model was fed in training.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from crunet.data.sources import DataSpec, model_spec
from crunet.errors import DataError, FileFormatError, MissingFileError

META = "crunet."  # the prefix of crunet's keys in an ONNX file's metadata


@dataclass
class OnnxInfo:
    """The input an ONNX file takes and what it is, from its metadata."""

    path: str
    model: str
    in_chans: int
    size: tuple[int, int]  # (H, W): spatial sizes are fixed in the file, only the batch is dynamic
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float
    num_classes: int | None
    graph: str  # small, fast or deployed
    quantization: str  # "" (float32) or what int8 it is
    data: str | None  # the data it trained on, when the file knows it
    data_kind: str | None  # its kind (fashion-mnist, folder...), when the file knows it
    classes: list[str] | None

    def data_spec(self, **options) -> DataSpec:
        """The data pipeline's spec for this file: its channels, normalization and crop at its (square) size."""
        if self.size[0] != self.size[1]:
            raise DataError(f"{self.path} takes {self.size[0]}x{self.size[1]} images; crunet's pipelines crop "
                            f"squares: export it with a square --input-size")
        cfg = {"input_size": (self.in_chans, *self.size), "mean": self.mean, "std": self.std,
               "crop_pct": self.crop_pct}
        return model_spec(cfg, self.in_chans, self.size[0], **options)

    def check_batch(self, x: torch.Tensor, source: str) -> None:
        """Images of ``source`` must have this file's channels and size."""
        want = (self.in_chans, *self.size)
        if tuple(x.shape[-3:]) != want:
            got = "x".join(map(str, x.shape[-3:]))
            raise DataError(f"{source} gives {got} images but {self.path} takes {'x'.join(map(str, want))} "
                            f"({_kind(self.in_chans)}): use the data the model trained on, or export the model at "
                            f"the data's size (--input-size)")


def _kind(chans: int) -> str:
    return "grey" if chans == 1 else f"{chans}-channel"


def read_onnx_info(path: str | os.PathLike) -> OnnxInfo:
    """The metadata of a crunet ONNX file; one line naming the problem for a file that is not ONNX or not
    crunet's."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # DecodeError, and whatever a foreign file provokes in protobuf
        raise FileFormatError(f"{path} is not an ONNX file ({' '.join(str(err).split())[:120]})") from None
    if not proto.graph.node:
        raise FileFormatError(f"{path} is not an ONNX model (no graph): export one with crunet export --format onnx")
    meta = {p.key[len(META):]: p.value for p in proto.metadata_props if p.key.startswith(META)}
    if "input" not in meta:
        raise FileFormatError(f"{path} has no crunet metadata (input size, normalization): export it with "
                              f"crunet export --format onnx")
    try:
        spec = json.loads(meta["input"])
        classes = json.loads(meta["classes"]) if meta.get("classes") else None
        return OnnxInfo(str(path), meta.get("model", "?"), int(spec["in_chans"]), tuple(int(s) for s in spec["size"]),
                        tuple(map(float, spec["mean"])), tuple(map(float, spec["std"])), float(spec["crop_pct"]),
                        int(meta["num_classes"]) if meta.get("num_classes", "").isdigit() else None,
                        meta.get("graph", ""), meta.get("quantization", ""), meta.get("data") or None,
                        meta.get("data_kind") or None, classes)
    except (ValueError, KeyError, TypeError) as err:
        raise FileFormatError(f"{path}: its crunet metadata is damaged ({err!r})") from None


class OnnxClassifier(nn.Module):
    """An ONNX file as a module: ``forward`` runs it in onnxruntime on the CPU (``threads``: 0 lets onnxruntime
    choose) and returns the logits as a tensor. Inference only."""

    def __init__(self, path: str | os.PathLike, threads: int = 0):
        super().__init__()
        self.info = read_onnx_info(path)
        ort = require_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.info.check_batch(x, "the data")
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(x.detach().cpu().float().numpy())})[0]
        return torch.from_numpy(out)


def require_onnxruntime():
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError(f"running ONNX files needs onnxruntime: pip install 'crunet[export]' ({err})") from err
    return onnxruntime
