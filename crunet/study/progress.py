"""Where each run of a grid stands: recorded, running, or stopped part-way (and how far), read from the results CSV
and the run directories, without touching a run's lock.

A worker writes its process id into the run's lock file once it holds the lock. Probing the lock instead would race
with a worker taking it (the worker would see it held and leave the run to nobody); a process id can only be stale,
so a live one is also checked to be a study worker where the system says (Linux's /proc).
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import NamedTuple

from crunet.study.grid import RunSpec
from crunet.study.results_csv import read_epochs, read_json

WORKER_MODULE = "crunet.study.worker"


def record_owner(lock_fd: int) -> None:
    """Write this process's id into the lock file it has just locked (``lock_fd``)."""
    os.ftruncate(lock_fd, 0)
    os.pwrite(lock_fd, f"{os.getpid()}\n".encode(), 0)


class RunState(NamedTuple):
    kind: str  # done, running, stopped, started (running or stopped: no id recorded), todo
    text: str  # the kind with its epochs, as `crunet study list` prints it


def run_state(spec: RunSpec, runs_dir: Path, done: set[str]) -> RunState:
    """``done``; ``running, K of E epochs done``; ``stopped after K of E epochs (resumes)``; or ``todo``."""
    if spec.key in done:
        return RunState("done", "done")
    out = runs_dir / spec.key
    seconds = [_epoch_seconds(row.get("epoch_seconds")) for row in read_epochs(out / "metrics.csv")]
    epochs, total = len(seconds), _planned_epochs(out / "config.json")
    progress = f"{epochs} of {total} epochs" if total else f"{epochs} epoch(s)"
    owner = _owner(runs_dir / (spec.key + ".lock"))
    if owner == "alive":
        times = [t for t in seconds if t is not None]
        left = f", about {_minutes(statistics.median(times) * (total - epochs))} left" if times and total else ""
        return RunState("running", f"running, {progress} done{left}")
    if owner == "unrecorded" and epochs:
        return RunState("started", f"started, {progress} done (running or stopped: its worker predates recorded ids)")
    if (out / "last.pt").is_file():
        return RunState("stopped", f"stopped after {progress} (resumes)")
    return RunState("todo", "todo")


def _epoch_seconds(text: str | None) -> float | None:
    """An epoch's training seconds from its ``epoch_seconds`` field, None where not logged (an epoch resumed
    part-way logs only its rest: the median of several ignores it)."""
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _minutes(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{max(1, round(seconds / 60))} min"


def _planned_epochs(config: Path) -> int | None:
    try:
        return int(read_json(config)["epochs"]) if config.is_file() else None
    except (KeyError, TypeError, ValueError):  # torn (FileFormatError), or without a whole number of epochs
        return None


def _owner(lock: Path) -> str:
    """``alive`` (a study worker with the recorded id runs), ``gone``, or ``unrecorded`` (a lock file without an id)."""
    try:
        text = lock.read_text().strip()
    except OSError:
        return "gone"
    if not text:
        return "unrecorded"
    try:
        pid = int(text)
        os.kill(pid, 0)
    except (OSError, ValueError):  # not an id, or no such process
        return "gone"
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.parent.is_dir():
        return "alive"  # no /proc here: a live process with the worker's id is the best evidence there is
    try:
        return "alive" if WORKER_MODULE.encode() in cmdline.read_bytes() else "gone"
    except OSError:
        return "gone"
