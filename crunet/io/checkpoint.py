"""Reading a crunet training checkpoint (``torch.load(weights_only=True)``: nothing in the file runs), choosing its
model or EMA weights, and loading weights into a model with one readable error for a mismatch. Writing checkpoints
is the trainer's (``crunet.train.checkpoint``); reading them is needed by evaluation, export and interop too, so it
lives here.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import torch

from crunet.errors import FileFormatError
from crunet.io.safetensors_file import is_safetensors

FORMAT = "crunet-checkpoint-v1"


class CheckpointError(FileFormatError):
    """A checkpoint that cannot be written, read, or used for this model."""


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint's dict; CheckpointError if it is missing, corrupt, or not a crunet checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if is_safetensors(path):
        raise CheckpointError(f"{path} is a safetensors weights file, not a crunet training checkpoint: give the "
                              "run's checkpoint (RUN_DIR/best.pt or last.pt), which records its data and settings")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a torn or foreign file
        raise CheckpointError(f"checkpoint {path} is corrupt or not a PyTorch checkpoint: "
                              f"{_why_unreadable(path, err)}") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a crunet training checkpoint")
    return state


def _why_unreadable(path: Path, err: Exception) -> str:
    """Why ``torch.load`` refused ``path``, in words. Torch's own messages for such files are a page long, cryptic
    (``101``, ``EOFError``) or advise ``weights_only=False``, which a file of unknown origin must never be given."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty"
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive, whose end record comes last
        return (f"it is not a whole torch.save archive ({size:,} bytes, no zip end record): written part-way, or "
                "another kind of file")
    if "weights only load failed" in str(err).lower():
        return "it holds Python objects besides tensors and plain data, and crunet never unpickles code"
    return f"{type(err).__name__}: {(str(err) or '-').splitlines()[0][:200]}"


def model_kwargs(state: dict) -> dict:
    """The ``create_model`` keywords that rebuild a checkpoint's model: classes, input channels and the design
    overrides it trained with (``--model-kwargs``)."""
    sizes = {k: int(state[k]) for k in ("num_classes", "in_chans") if k in state}
    return {**sizes, **state.get("config", {}).get("model_kwargs", {})}


def checkpoint_weights(state: dict, source: str | os.PathLike, use_ema: bool = False) -> dict:
    """The model's weights of a checkpoint, or its EMA weights; CheckpointError when it holds none."""
    weights = state.get("ema") if use_ema else state.get("model")
    if not weights:
        raise CheckpointError(f"{source} holds no {'EMA ' if use_ema else ''}weights"
                              f"{' (train with --ema-decay)' if use_ema else ''}")
    return weights


def load_model_state(model: torch.nn.Module, state_dict: dict, source: str, model_name: str | None = None) -> None:
    """Load weights, turning a key or shape mismatch into one readable error."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [k for k in own if k in state_dict and own[k].shape != state_dict[k].shape]
    if missing or unexpected or wrong:
        detail = "; ".join(f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                           for label, keys in (("missing", missing), ("unexpected", unexpected),
                                               ("shape differs", wrong)) if keys)
        name = f" ({model_name})" if model_name else ""
        raise CheckpointError(f"{source} was written by a different model than {getattr(model, 'name', 'this one')}"
                              f"{name}: {detail}")
    model.load_state_dict(state_dict)
