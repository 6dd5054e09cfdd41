"""One run of a study, in its own process: train through the normal trainer, then append the run's row.

A run directory left by a killed run is resumed from its checkpoint (or started again if it has none), and a run
that finished but whose row was never written is recorded without training again. Several grids may share one
results CSV (one per core, say): a run is trained by whichever takes its lock first and recorded once.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import resource
import shutil
import subprocess
import time
from pathlib import Path

import torch

from crunet.errors import FileFormatError
from crunet.study.grid import Recipe, RunSpec
from crunet.study.progress import record_owner
from crunet.study.results_csv import append_row, done_keys, epochs_file, read_epochs, read_json
from crunet.study.runner import ELSEWHERE


class RunElsewhere(RuntimeError):
    """Another process is training the run, or has recorded it."""


def run_one(spec: RunSpec, recipe: Recipe, csv_path: Path, runs_dir: Path, epochs_dir: Path, threads: int,
            concurrent: int) -> dict:
    """Train and record one run."""
    from crunet.train.trainer import train

    torch.set_num_threads(threads)
    out = runs_dir / spec.key
    if int(os.environ.get("RANK", "0")) > 0:
        return _train_as_peer(spec, recipe, out)
    out.mkdir(parents=True, exist_ok=True)
    lock = os.open(runs_dir / (spec.key + ".lock"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RunElsewhere(f"{spec.key} is already running in another process, which will record it") from None
    record_owner(lock)
    if spec.key in done_keys(csv_path):  # checked under the run's lock: no other process can be recording it now
        raise RunElsewhere(f"{spec.key} was recorded by another process meanwhile")
    cfg = spec.train_config(recipe, str(out))
    if not (out / "summary.json").is_file():
        if (out / "last.pt").is_file():
            cfg.resume, cfg.out = str(out / "last.pt"), None
        elif any(out.iterdir()):
            shutil.rmtree(out)  # killed before its first checkpoint: nothing to keep
            out.mkdir()
        sittings = out / "sittings.txt"
        with open(sittings, "a") as f:
            f.write("started\n")
        cpu, wall = _cpu_seconds(), time.perf_counter()
        train(cfg)
        with open(sittings, "a") as f:
            f.write(f"{_cpu_seconds() - cpu:.3f} {threads * (time.perf_counter() - wall):.3f}\n")
    summary, resolved = read_json(out / "summary.json"), read_json(out / "config.json")
    epochs = read_epochs(out / "metrics.csv")
    epochs_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / "metrics.csv", epochs_dir / epochs_file(spec.key))
    row = make_row(spec, cfg, summary, resolved, epochs, threads, concurrent)
    row["cpu_share"] = cpu_share(out / "sittings.txt")
    append_row(csv_path, row)
    return row


def _train_as_peer(spec: RunSpec, recipe: Recipe, out: Path) -> dict:
    """A torchrun peer of the run (rank > 0): it trains beside rank 0, which holds the run's lock, starts it afresh
    or resumes it (both see the same files: rank 0 removes only a run without a checkpoint) and records it."""
    from crunet.train.trainer import train

    cfg = spec.train_config(recipe, str(out))
    if not (out / "summary.json").is_file():
        if (out / "last.pt").is_file():
            cfg.resume, cfg.out = str(out / "last.pt"), None
        train(cfg)
    return {}


def make_row(spec: RunSpec, cfg, summary: dict, resolved: dict, epochs: list[dict], threads: int,
             concurrent: int) -> dict:
    from crunet.layers.complexity import complexity
    from crunet.models import create_model

    info = resolved["resolved"]
    model = create_model(cfg.model, num_classes=info["num_classes"], in_chans=info["in_chans"], **cfg.model_kwargs)
    cx = complexity(model, input_size=(info["in_chans"], info["img_size"], info["img_size"]))
    best = max(epochs, key=lambda r: float(r["val_top1"]))
    final = summary["final_val"]
    train_seconds = sum(float(r["epoch_seconds"]) for r in epochs)
    images = sum(float(r["images_per_s"]) * float(r["epoch_seconds"]) for r in epochs)
    return {"key": spec.key, "dataset": spec.dataset, "model": spec.model, "option": spec.option, "seed": spec.seed,
            "params": cx["params"], "macs": cx["macs"], "test_top1": final["top1"], "test_top5": final["top5"],
            "test_loss": final["loss"], "best_epoch": int(best["epoch"]), "best_top1": float(best["val_top1"]),
            "final_epoch": int(epochs[-1]["epoch"]), "lr": info["lr"], "train_seconds": train_seconds,
            "images_per_s": images / max(train_seconds, 1e-9), "threads": threads, "concurrent_runs": concurrent,
            "git_commit": code_version(), "torch_version": torch.__version__,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "device": device_name(info.get("device", "cpu")),
            "processor": processor_name()}


def processor_name() -> str:
    """The CPU's model and the instruction set PyTorch's kernels dispatch to: CPU results differ between machines
    (same code, same seed), so a row says which processor computed it."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    return f"{model} ({torch.backends.cpu.get_cpu_capability()})"


def device_name(device: str) -> str:
    """``cpu``, or ``cuda:0 (NVIDIA H200)``: the report takes its time axis from CPU runs only."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device


def cpu_share(sittings: Path) -> float | str:
    """CPU seconds over thread-seconds of wall time, summed over every sitting the run took; unknown ("") when a
    sitting was killed before it could record its times (how loaded the machine was then is not known)."""
    lines = sittings.read_text().splitlines() if sittings.is_file() else []
    timed = [_sitting(sittings, n, line) for n, line in enumerate(lines, 1) if line != "started"]
    if not timed or len(timed) != lines.count("started"):
        return ""
    return round(sum(cpu for cpu, _ in timed) / sum(wall for _, wall in timed), 3)


def _sitting(path: Path, line_number: int, line: str) -> tuple[float, float]:
    """A sittings line's CPU and thread-wall seconds, refusing a torn or malformed line by file and line."""
    try:
        cpu, wall = map(float, line.split())
    except ValueError:
        raise FileFormatError(f"{path}:{line_number}: malformed or torn record {line!r} (expected 'started' or CPU "
                              "and wall seconds)") from None
    return cpu, wall


def _cpu_seconds() -> float:
    """CPU time of this process: over wall time and threads, the share of its cores the run really had. Near 1 the
    run had its cores to itself and its time is a measurement; well below 1 other work slowed it."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def code_version() -> str:
    """The commit of the crunet code that ran, with ``+dirty`` when the package differs from it."""
    package = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(package), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(package), "status", "--porcelain", "--", "."], capture_output=True,
                               text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit or "unknown") + ("+dirty" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description="one study run (started by crunet study run)")
    parser.add_argument("job", help="JSON: spec, recipe, csv, runs, epochs, threads, concurrent")
    job = json.loads(parser.parse_args().job)
    try:
        run_one(RunSpec(**job["spec"]), Recipe(**job["recipe"]), Path(job["csv"]), Path(job["runs"]),
                Path(job["epochs"]), job["threads"], job["concurrent"])
    except RunElsewhere as elsewhere:
        print(elsewhere, flush=True)
        raise SystemExit(ELSEWHERE) from None
    except KeyboardInterrupt as stopped:  # a signal: the trainer wrote a checkpoint; the next grid run resumes it
        print(f"stopped: {stopped}", flush=True)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
