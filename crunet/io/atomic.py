"""Files that are either the old version or the new one, never torn: write a temporary file beside the target,
fsync it, rename it over the target, fsync the folder. A kill leaves at most a stale ``.NAME.tmpPID`` file, which
``remove_stale_temporaries`` deletes when the next run starts in that folder. Every crunet writer of a file that a
kill must not tear (checkpoints, run records, safetensors weights) goes through ``atomic_path`` or ``atomic_open``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_path(p) as tmp: write(tmp)``: for writers that take a file name; ``p`` appears whole when the
    block ends (the temporary file fsynced, renamed over ``p``, the folder fsynced), or not at all."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """``with atomic_open(p) as f: f.write(...)``: ``p`` appears whole when the block ends, or not at all."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed writer left in ``folder`` (``.NAME.tmpPID``, ``NAME.tmp``)."""
    removed = []
    for p in Path(folder).iterdir():
        stale = (p.name.startswith(".") and ".tmp" in p.name) or p.name.endswith(".tmp")
        if stale and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
