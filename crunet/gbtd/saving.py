"""Saving a model whose design is not a registered name (a factorized CRU model): safetensors plus its design."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from crunet.errors import FileFormatError, MissingFileError
from crunet.models.design import NetCfg, StageCfg
from crunet.models.preact_resnet import PreActResNet

FORMAT = "crunet-gbtd-model-v1"


def save_model(model: PreActResNet, path: str | os.PathLike) -> Path:
    """Weights as safetensors; the design, name, classes and input channels in its metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = {"format": FORMAT, "name": model.name, "num_classes": str(model.num_classes),
            "in_chans": str(model.in_chans), "design": json.dumps(dataclasses.asdict(model.cfg)),
            "pretrained_cfg": json.dumps(model.pretrained_cfg)}
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=meta)
    return path


def load_model(path: str | os.PathLike) -> PreActResNet:
    """A model written by ``save_model``, rebuilt from its design and loaded."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise FileFormatError(f"{path} is not a model written by crunet factorize (no {FORMAT} metadata)")
    design = json.loads(meta["design"])
    cfg = NetCfg(**{**design, "stages": tuple(StageCfg(**s) for s in design["stages"])})
    pretrained = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(meta["pretrained_cfg"]).items()}
    model = PreActResNet(cfg, int(meta["num_classes"]), int(meta["in_chans"]), meta["name"], pretrained)
    model.load_state_dict(load_file(str(path)))
    return model
