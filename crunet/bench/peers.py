"""Models to benchmark, by name: ours (``crunet.create_model``) and timm's (``timm:NAME``), with their MACs.

The only module of the benchmark that imports timm, and only when a ``timm:`` model is asked for.
"""

from __future__ import annotations

import importlib
import importlib.util

from torch import nn

from crunet.errors import UnsupportedError
from crunet.layers.complexity import complexity, measured_macs
from crunet.models import create_model

TIMM_PEERS = ("timm:resnext50_32x4d", "timm:resnet50")
OWN_PEER = "preresnext50_32x4d"


def timm_available() -> bool:
    return importlib.util.find_spec("timm") is not None


def default_peers() -> list[str]:
    """timm's ResNeXt-50 32x4d and ResNet-50 when timm is importable, our own ResNeXt-50 32x4d always."""
    return [*(TIMM_PEERS if timm_available() else ()), OWN_PEER]


def build(spec: str, num_classes: int, in_chans: int) -> nn.Module:
    if spec.startswith("timm:"):
        if not timm_available():
            raise UnsupportedError(f"{spec}: timm is not importable in this Python (try .venv-timm/bin/python)")
        timm = importlib.import_module("timm")
        return timm.create_model(spec[5:], pretrained=False, num_classes=num_classes, in_chans=in_chans)
    return create_model(spec, num_classes=num_classes, in_chans=in_chans)


def macs_per_image(model: nn.Module, spec: str, input_size: tuple[int, int, int]) -> int:
    """Analytic for our models (``crunet.complexity``), counted by FlopCounterMode for timm's."""
    if spec.startswith("timm:"):
        return measured_macs(model, input_size)
    return complexity(model, input_size)["macs"]


def timm_version() -> str | None:
    if not timm_available():
        return None
    return importlib.import_module("timm").__version__
