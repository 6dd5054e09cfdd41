"""The run directory: config.json (resolved), metrics.csv (a row per epoch), summary.json, curves.png, TensorBoard.

Every file is replaced atomically (``crunet.io.atomic``); a new run never shares a folder with another one, even
when both start in the same second; and one process at a time writes a run directory (``RunLock``): a second
``crunet train --out X`` (a requeued job meeting its predecessor) is refused at once, naming the holder.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import socket
import time
from pathlib import Path

from crunet.errors import ConfigError
from crunet.io.atomic import remove_stale_temporaries, write_text_atomic
from crunet.train.config import TrainConfig
from crunet.train.dist import DistInfo, from_main

LOCK_NAME = ".lock"


class RunDirBusy(ConfigError):
    """Another live process holds the run directory."""


class RunLock:
    """One writer per run directory: an exclusive ``flock`` on ``RUN_DIR/.lock``, which holds the holder's pid and
    host for the refusal message. The kernel releases the lock when the holder's process ends, however it ends, so
    a killed run's directory is usable again at once (the stale file is harmless: the lock, not the file, counts)."""

    def __init__(self, path: str | os.PathLike, created: bool = False):
        """``created``: the directory is new to this run, so a run that fails before writing anything removes it."""
        self.path, self.created = Path(path) / LOCK_NAME, created
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            raise RunDirBusy(f"run directory {self.path.parent} is in use by another process ({holder}); "
                             f"wait for it to end or choose another --out") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)

    def release(self, failed: bool = False) -> None:
        """Unlock; after a failure, a directory this run created and left empty (but for the lock) goes too."""
        if self.fd is None:
            return
        folder = self.path.parent
        if failed and self.created and [p.name for p in folder.iterdir()] == [LOCK_NAME]:
            self.path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                folder.rmdir()
        os.close(self.fd)  # closing releases the lock
        self.fd = None


def default_run_dir(model: str) -> Path:
    """``runs/<model>-<date>-<time>``, created here; ``-2``, ``-3`` ... when that name is taken."""
    base = Path("runs") / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise ConfigError(f"cannot find a free run directory name beside {base}; pass --out")


def run_dir_for(cfg: TrainConfig, resuming: bool) -> Path:
    """``--out``; else the folder of the checkpoint resumed; else a new ``runs/<model>-<date>-<time>``."""
    if cfg.out:
        return Path(cfg.out)
    if resuming:
        return Path(cfg.resume).parent
    return default_run_dir(cfg.model)


def claim_run_dir(cfg: TrainConfig, resuming: bool, info: DistInfo) -> tuple[str, RunLock | None]:
    """The run directory, locked by rank 0 (its ``RunLock``; None on the other ranks). Collective under torchrun:
    every rank learns the path, or raises RunDirBusy (a ConfigError) together."""
    path, refusal, lock = None, None, None
    if info.main:
        created = not Path(cfg.out).exists() if cfg.out else not resuming  # default_run_dir: a new one
        path = run_dir_for(cfg, resuming)
        try:
            lock = None if path.exists() and not path.is_dir() else RunLock(path, created)  # a file: check_run_dir
        except RunDirBusy as err:
            refusal = str(err)
    path, refusal = from_main((str(path), refusal), info)
    if refusal:
        raise RunDirBusy(refusal)
    return path, lock


def check_run_dir(path: str | os.PathLike, resume: bool) -> Path:
    """Every process checks, so that all fail together: a new run never writes over an existing one."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"run directory {path} is a file")
    if not resume and any((path / name).exists() for name in ("metrics.csv", "last.pt")):
        raise ConfigError(f"{path} already holds a run; continue it with --resume {path / 'last.pt'} "
                          f"(or --resume auto --out {path}) or choose another --out")
    return path


def write_json(path: Path, obj: dict) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")


class RunDir:
    def __init__(self, path: str | os.PathLike, tensorboard: bool = True):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.removed = remove_stale_temporaries(self.path)
        self.csv = self.path / "metrics.csv"
        self._tb, self._tb_wanted = None, tensorboard

    def write_config(self, cfg: dict) -> None:
        write_json(self.path / "config.json", cfg)

    def rows(self) -> list[dict]:
        if not self.csv.is_file():
            return []
        with open(self.csv, newline="") as f:
            return list(csv.DictReader(f))

    def append_row(self, row: dict) -> None:
        """Append an epoch: the whole table is written to a temporary file that replaces metrics.csv, so a kill
        leaves the old table or the new one. A row with new columns (a resumed run with extra losses) widens it."""
        self._write(self.rows() + [{k: _fmt(v) for k, v in row.items()}])
        self._tensorboard(row)

    def keep_epochs(self, done: int) -> None:
        """On resume, keep the rows of the ``done`` epochs the checkpoint had finished, drop later ones."""
        rows = self.rows()
        kept = [r for r in rows if int(r["epoch"]) <= done]
        if not kept:
            self.csv.unlink(missing_ok=True)
        elif len(kept) != len(rows):
            self._write(kept)

    def _write(self, rows: list[dict]) -> None:
        columns: list[str] = []
        for r in rows:
            columns += [k for k in r if k not in columns]
        text = io.StringIO()
        writer = csv.DictWriter(text, columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(self.csv, text.getvalue())

    def write_summary(self, summary: dict) -> None:
        write_json(self.path / "summary.json", summary)

    def _tensorboard(self, row: dict) -> None:
        if not self._tb_wanted:
            return
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self._tb_wanted = False
                return
            self._tb = SummaryWriter(str(self.path / "tb"))
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self._tb.add_scalar(key, value, int(row["epoch"]))
        self._tb.flush()


def _fmt(v):
    return f"{v:.6g}" if isinstance(v, float) else v
