"""Deployment files: ONNX (opset >= 17, dynamic batch, checked in onnxruntime) and TorchScript (traced).

onnx, onnxscript and onnxruntime (the ``export`` extra) are imported inside the functions that need them.
safetensors files are written by ``crunet.interop.weights.save_weights``.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from crunet.errors import ConfigError

FORMATS = ("safetensors", "onnx", "torchscript")
MIN_OPSET = 17


def example_input(model: nn.Module, batch: int = 2, input_size: tuple[int, int] | None = None,
                  seed: int = 0) -> torch.Tensor:
    """A random batch at the model's input size (``pretrained_cfg['input_size']``) or ``input_size`` (H, W)."""
    chans, h, w = model.pretrained_cfg["input_size"]
    h, w = input_size or (h, w)
    return torch.randn(batch, chans, h, w, generator=torch.Generator().manual_seed(seed))


def export_onnx(model: nn.Module, path: str | os.PathLike, input_size: tuple[int, int] | None = None,
                opset: int = 18) -> Path:
    """The model in eval mode as one ONNX file with a dynamic batch dimension (input ``x``, output ``logits``)."""
    _require("onnxscript", "onnx")
    if opset < MIN_OPSET:
        raise ConfigError(f"opset must be {MIN_OPSET} or newer, got {opset}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    x = example_input(model, 2, input_size)
    batch = torch.export.Dim("batch", min=1)
    with _quiet_exporter(), torch.no_grad():
        torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["logits"], opset_version=opset,
                          dynamo=True, dynamic_shapes=({0: batch},), external_data=False, verbose=False)
    return path


def check_onnx(model: nn.Module, path: str | os.PathLike, batch: int = 3,
               input_size: tuple[int, int] | None = None) -> float:
    """The largest |onnxruntime - PyTorch| difference of the outputs on a random batch."""
    return onnx_difference(model, path, batch, input_size)[0]


def onnx_difference(model: nn.Module, path: str | os.PathLike, batch: int = 3,
                    input_size: tuple[int, int] | None = None) -> tuple[float, float]:
    """(largest |onnxruntime - PyTorch| difference, largest |PyTorch output|) on a random batch: float32 rounding
    grows with the outputs' size, so a tolerance is relative to the second for models with large outputs."""
    ort = _require("onnxruntime", "onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = example_input(model, batch, input_size, seed=1)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = model.eval()(x).numpy()
    if got.shape != want.shape:
        raise ValueError(f"{path}: onnxruntime gives shape {got.shape}, PyTorch {want.shape}")
    return float(np.abs(got - want).max()), float(np.abs(want).max())


def export_torchscript(model: nn.Module, path: str | os.PathLike,
                       input_size: tuple[int, int] | None = None) -> Path:
    """The model in eval mode traced to TorchScript: any batch size runs; the input checks of ``forward`` run once,
    at trace time, and are not part of the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*is deprecated.*")
        traced = torch.jit.trace(model, example_input(model, 2, input_size), check_trace=False)
        torch.jit.save(traced, str(path))
    return path


def _require(module: str, package: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"ONNX export needs {package}: pip install 'crunet[export]' ({err})") from err


class _quiet_exporter:
    """Silence the exporter's notes (torchvision ops it skips, deprecations) while it runs."""

    def __enter__(self):
        self._levels = {}
        for name in ("torch.onnx", "torch.export", "torch._export", "onnxscript"):
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.ERROR)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return self

    def __exit__(self, *exc):
        self._warnings.__exit__(*exc)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
        return False
