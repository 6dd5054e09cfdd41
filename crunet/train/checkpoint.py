"""Checkpoints: written atomically (temporary file, fsync, rename); read by ``crunet.io.checkpoint`` (re-exported here
for the trainer).

A kill at any moment leaves either the old or the new file, never a torn one; a failed write (disk full) removes
its temporary file and leaves the previous checkpoint as it was.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from crunet.io.checkpoint import FORMAT, CheckpointError, load_checkpoint, load_model_state
from crunet.train.atomic import fsync_dir

__all__ = ["CheckpointError", "load_checkpoint", "load_model_state", "save_checkpoint"]


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except (OSError, RuntimeError) as err:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"could not write checkpoint {path}: {err}"
                              f"{' (disk full)' if getattr(err, 'errno', None) == 28 else ''}; "
                              f"the previous checkpoint, if any, is intact") from err
    return path

