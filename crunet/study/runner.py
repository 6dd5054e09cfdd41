"""Run a grid: skip what the CSV already holds, run the rest N at a time (each in its own process with its own
threads), print a line per finished run with an ETA for the grid. Stop it at any moment and run it again later."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from crunet.errors import ConfigError, MissingFileError
from crunet.study.grid import RECIPES, Recipe, RunSpec
from crunet.study.results_csv import done_keys, grid_csv, read_rows
from crunet.train.signals import StopRequests

ELSEWHERE = 75  # a worker's exit status: another process is training the run (and will record it) or has recorded it
STOPPED = 130  # a worker's exit status: a signal stopped it after a checkpoint; the next grid run resumes it


RESULTS_DIR = "results"  # the committed CSVs, epochs/ and the report
RUNS_DIR = "runs/study"  # run directories and logs


@dataclass
class GridPaths:
    csv: Path  # one row per finished run (committed)
    epochs: Path  # each run's per-epoch metrics.csv (committed: the gradient-flow plots read them)
    runs: Path  # run directories and logs (checkpoints: not committed)

    @classmethod
    def of(cls, grid: str, results: str | Path = RESULTS_DIR, runs: str | Path = RUNS_DIR) -> GridPaths:
        """Grid ``grid``'s paths: its CSV and the epochs in ``results``, its runs in ``runs``."""
        return cls(grid_csv(results, grid), Path(results) / "epochs", Path(runs))


def check_data(specs: Sequence[RunSpec], recipes: dict[str, Recipe]) -> None:
    """Every data set of the grid is there before the first run starts."""
    from crunet.data import detect_kind

    for dataset in sorted({s.dataset for s in specs}):
        if dataset not in recipes:
            raise ConfigError(f"no recipe for data set {dataset!r}; known: {', '.join(recipes)}")
        data = recipes[dataset].data
        try:
            detect_kind(data)
            if data is None:
                from crunet.data.idx import find_fashion_mnist

                find_fashion_mnist(None)
        except FileNotFoundError as err:
            hint = " (run ./scripts/get-mnist)" if dataset == "mnist" else ""
            raise MissingFileError(f"data set {dataset}: {err}{hint}") from None


def run_grid(specs: Sequence[RunSpec], paths: GridPaths, workers: int = 1, threads: int | None = None,
             recipes: dict[str, Recipe] | None = None, say: Callable[[str], None] = print,
             nproc: int = 1) -> dict[str, int]:
    """Run every spec not yet in ``paths.csv``; returns counts of finished, failed and skipped runs, and of runs left
    to another grid process sharing the CSV ("elsewhere": found finished, or running, by the time their turn came).
    ``nproc`` > 1: each run is ``nproc`` processes under torchrun (one per GPU), its rank 0 recording it."""
    recipes = recipes or RECIPES
    if workers < 1 or nproc < 1:
        raise ConfigError(f"--workers and --nproc must be at least 1, got {workers} and {nproc}")
    threads = threads or max(1, (os.cpu_count() or 1) // (workers * nproc))
    done = done_keys(paths.csv)
    pending = [s for s in specs if s.key not in done]
    check_data(pending, recipes)
    say(f"{len(specs) - len(pending)} of {len(specs)} runs already in {paths.csv}; running {len(pending)}, "
        f"{workers} at a time with {threads} thread(s) each")
    counts = {"finished": 0, "failed": 0, "stopped": 0, "skipped": len(specs) - len(pending), "elsewhere": 0}
    running: dict[str, tuple[subprocess.Popen, RunSpec, float]] = {}
    started = time.time()
    # SIGINT and SIGTERM stop the grid and, through it, its runs (they checkpoint). Set here, not left to Python: a
    # grid started in the background (`cmd &`) inherits SIGINT ignored, and would let its runs stop and go on.
    with StopRequests() as stop:
        try:
            while pending or running:
                if stop.requested:
                    raise KeyboardInterrupt(f"stopped by {stop.requested}")
                while pending and len(running) < workers:
                    spec = pending.pop(0)
                    if spec.key in done_keys(paths.csv):  # another grid sharing this CSV has finished it
                        counts["elsewhere"] += 1
                        continue
                    running[spec.key] = (_launch(spec, recipes[spec.dataset], paths, threads, workers, nproc), spec,
                                         time.time())
                time.sleep(0.2)
                for key, (proc, spec, t0) in list(running.items()):
                    if proc.poll() is None:
                        continue
                    del running[key]
                    if proc.returncode == ELSEWHERE:
                        counts["elsewhere"] += 1
                        say(f"{spec.key}: left to another grid process sharing {paths.csv.name}")
                        continue
                    ok = proc.returncode == 0 and key in done_keys(paths.csv)
                    outcome = "finished" if ok else "stopped" if proc.returncode == STOPPED else "failed"
                    counts[outcome] += 1
                    say(_progress_line(spec, outcome, time.time() - t0, paths, counts, len(pending) + len(running),
                                       started))
        except KeyboardInterrupt:
            for proc, _, _ in running.values():
                proc.send_signal(signal.SIGTERM)
            for proc, _, _ in running.values():
                proc.wait(timeout=120)
            say(f"grid stopped: {counts['finished']} run(s) finished and recorded; run the same command again to "
                "continue (finished runs are skipped, interrupted ones resume from their checkpoint)")
            raise
    return counts


def _launch(spec: RunSpec, recipe: Recipe, paths: GridPaths, threads: int, concurrent: int,
            nproc: int = 1) -> subprocess.Popen:
    log = paths.runs / (spec.key + ".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    job = job_json(spec, recipe, paths.csv, paths.runs, paths.epochs, threads, concurrent)
    torchrun = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else []
    with open(log, "a") as out:
        return subprocess.Popen([sys.executable, *torchrun, "-m", "crunet.study.worker", job], stdout=out,
                                stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent)


def job_json(spec: RunSpec, recipe: Recipe, csv_path: Path, runs_dir: Path, epochs_dir: Path, threads: int,
             concurrent: int) -> str:
    return json.dumps({"spec": asdict(spec), "recipe": asdict(recipe), "csv": str(csv_path), "runs": str(runs_dir),
                       "epochs": str(epochs_dir), "threads": threads, "concurrent": concurrent})


def _die_with_parent() -> None:
    """Linux: the run gets SIGTERM (and checkpoints) when the grid process dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _progress_line(spec: RunSpec, outcome: str, seconds: float, paths: GridPaths, counts: dict[str, int],
                   left: int, started: float) -> str:
    n = counts["finished"] + counts["failed"] + counts["stopped"]
    if outcome == "stopped":
        return (f"[{n}] STOPPED {spec.key} after {seconds:.0f}s by a signal; its checkpoint resumes it when the grid "
                f"runs again; {left} left")
    if outcome == "failed":
        return (f"[{n}] FAILED {spec.key} after {seconds:.0f}s: see {paths.runs / (spec.key + '.log')}; "
                f"{left} left")
    row = next(r for r in reversed(read_rows(paths.csv)) if r["key"] == spec.key)
    per_run = (time.time() - started) / n  # wall time per finished run at this concurrency
    eta = per_run * left
    return (f"[{n}] {spec.key}: test top-1 {float(row['test_top1']):.2f}% in {seconds:.0f}s; {left} left, "
            f"ETA {_duration(eta)}")


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"
