"""Telling a safetensors file from a torch checkpoint by its bytes, whatever its name."""

from __future__ import annotations

import os
from pathlib import Path


def is_safetensors(path: str | os.PathLike) -> bool:
    """A ``.safetensors`` name, or the format's first bytes: an 8-byte little-endian header length, then ``{``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{"
