"""Deployment files: ONNX (opset >= 17, dynamic batch, checked in onnxruntime) and TorchScript (traced).

An ONNX file holds the deployed model (``crunet.deploy``): ``graph="small"`` keeps each shared tensor once and folds
the BNs where that keeps it so; ``graph="fast"`` folds every BN, giving each use its own copy of the shared tensors
(what ``deploy`` runs by default). Two things would store a shared tensor more than once or bloat the file, and
``export_onnx`` stops both: the exporter's optimizer folds any computation on weights into a new constant (the
per-call ``cat`` of a use's unique filters and the shared ones became one copy per use), so a node reading a float
initializer that several nodes read is never folded; and the exporter writes its debugging notes (stack trace, FX
node, class names) on every node, a quarter of a small model's file, which are dropped. The file's metadata
(``crunet.*`` keys, read back by ``crunet.interop.onnx_file``) names the model and its input: channels, size,
normalization, crop, so ``crunet eval`` and the int8 calibration feed it as the model was fed in training.

onnx, onnxscript and onnxruntime (the ``export`` extra) are imported inside the functions that need them.
safetensors files are written by ``crunet.interop.weights.save_weights``.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from crunet.deploy import DeployedModel, deploy
from crunet.errors import ConfigError
from crunet.interop.onnx_file import META
from crunet.io.atomic import atomic_path

FORMATS = ("safetensors", "onnx", "torchscript")
GRAPHS = {"small": "sharing kept: each shared tensor stored once",
          "fast": "sharing unrolled: every BN folded into a per-use copy of the shared tensors"}
MIN_OPSET = 17


def example_input(model: nn.Module, batch: int = 2, input_size: tuple[int, int] | None = None,
                  seed: int = 0) -> torch.Tensor:
    """A random batch at the model's input size (``pretrained_cfg['input_size']``) or ``input_size`` (H, W)."""
    chans, h, w = model.pretrained_cfg["input_size"]
    h, w = input_size or (h, w)
    return torch.randn(batch, chans, h, w, generator=torch.Generator().manual_seed(seed))


def export_onnx(model: nn.Module, path: str | os.PathLike, input_size: tuple[int, int] | None = None,
                opset: int = 18, graph: str | None = None, metadata: dict[str, str] | None = None,
                normalization: dict | None = None) -> Path:
    """The model, deployed, as one ONNX file with a dynamic batch dimension (input ``x``, output ``logits``).

    ``graph``: "small" (the default for a model) or "fast", see ``GRAPHS``; a ``DeployedModel`` is written as it was
    deployed. ``metadata``: more ``crunet.*`` entries (class names, training data) beside the model's input;
    ``normalization``: the mean, std or crop_pct the run used where they differ from the model's pretrained_cfg."""
    _require("onnxscript", "onnx")
    if opset < MIN_OPSET:
        raise ConfigError(f"opset must be {MIN_OPSET} or newer, got {opset}")
    if graph is not None and graph not in GRAPHS:
        raise ConfigError(f"graph must be one of {sorted(GRAPHS)}, got {graph!r}")
    if isinstance(model, DeployedModel):
        if graph is not None:
            raise ConfigError("graph applies to a model, not a DeployedModel: it was deployed already "
                              "(deploy(model, unshare=False) is the small graph)")
        deployed, graph = model, "deployed"
    else:
        graph = graph or "small"
        deployed = deploy(model.eval(), unshare=graph == "fast", layout="contiguous")
    x = example_input(deployed, 2, input_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1)
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(deployed, (x,), None, input_names=["x"], output_names=["logits"],
                                    opset_version=opset, dynamo=True, dynamic_shapes=({0: batch},), optimize=False,
                                    verbose=False)
        _optimize_keeping_shared(program.model)
    _drop_debug_notes(program.model)
    program.model.metadata_props.update(input_metadata(deployed, tuple(x.shape[1:]), graph, normalization))
    program.model.metadata_props.update({META + k: v for k, v in (metadata or {}).items()})
    with atomic_path(path) as tmp:
        program.save(str(tmp), external_data=False)
    return path


def input_metadata(model: nn.Module, input_shape: tuple[int, ...], graph: str,
                   normalization: dict | None = None) -> dict[str, str]:
    """The ``crunet.*`` entries that say what the file takes: channels, size, normalization, crop; and what it is."""
    cfg = {**model.pretrained_cfg, **(normalization or {})}
    entries = {"model": getattr(model, "name", type(model).__name__), "graph": graph,
               "num_classes": str(getattr(model, "num_classes", "")),
               "input": json.dumps({"in_chans": input_shape[0], "size": list(input_shape[1:]),
                                    "mean": list(cfg["mean"]), "std": list(cfg["std"]),
                                    "crop_pct": cfg.get("crop_pct", 0.875)})}
    return {META + k: v for k, v in entries.items()}


def _optimize_keeping_shared(model) -> None:
    """onnxscript's optimizer (constant folding, rewrites, dead code), except that a node reading a float
    initializer that other nodes read too is not folded: its result would be a per-use copy of a shared tensor."""
    from onnxscript.optimizer import optimize_ir

    def reads_shared(node) -> bool | None:
        for value in node.inputs:
            if (value is not None and value.is_initializer() and value.const_value is not None
                    and value.const_value.dtype.is_floating_point() and len(value.uses()) > 1):
                return False
        return None  # the optimizer's own rules

    optimize_ir(model, should_fold=reads_shared)


def _drop_debug_notes(model) -> None:
    """The exporter's notes on every node and value (stack trace, FX node, class hierarchy, graph signature)."""
    graph = model.graph
    graph.metadata_props.clear()
    values = [*graph.inputs, *graph.outputs, *graph.initializers.values()]
    for node in graph.all_nodes():
        node.metadata_props.clear()
        values += node.outputs
    for value in values:
        value.metadata_props.clear()


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
