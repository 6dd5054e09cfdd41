"""Exact resume, proven: a short deterministic CPU run is killed (SIGKILL, SIGTERM) at random moments and at the
worst ones (during a checkpoint write, right after an optimizer step, while metrics.csv is replaced), resumed with
``--resume auto`` each time, and must end with weights, optimizer state and metrics equal (``torch.equal``, the
same CSV text) to an uninterrupted run's.

Each attempt is a forked child of the test process (no interpreter start-up), so one attempt costs a fraction of a
second.
"""

import csv
import os
import random
import signal
from pathlib import Path

import pytest
import torch

from crunet.train import load_checkpoint, train

TIMING = ("images_per_s", "epoch_seconds")


def _child(cfg, tiny_model, fault):
    """In the forked child: train (resuming if possible), with the fault installed; exit 0 when the run is done."""
    code = 1
    try:
        torch.set_num_threads(1)
        if fault is not None:
            fault()
        torch.manual_seed(1)
        train(cfg, tiny_model())
        code = 0
    except KeyboardInterrupt:
        code = 4  # TrainingInterrupted: stopped by a signal with a checkpoint
    except BaseException:  # noqa: B036 - anything else is a failure the parent reports
        import traceback

        traceback.print_exc()
        code = 3
    finally:
        os._exit(code)


def attempt(cfg, tiny_model, fault=None) -> int:
    """Run one attempt in a child process with the fault installed. Returns the exit code (or -signal)."""
    pid = os.fork()
    if pid == 0:
        _child(cfg, tiny_model, fault)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def kill_self_after(target, method: str, calls: int):
    """A fault: the ``calls``-th call of ``target.method`` returns, then the process is SIGKILLed."""
    real, count = getattr(target, method), [0]

    def wrapped(*args, **kwargs):
        out = real(*args, **kwargs)
        count[0] += 1
        if count[0] == calls:
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    return lambda: setattr(target, method, wrapped)


def signal_self_during_step(calls: int, delay: float, sig: int):
    """A fault: ``delay`` seconds after the ``calls``-th optimizer step of this attempt, the process sends itself
    ``sig``: a random moment in whatever comes next (forward, backward, a checkpoint write, validation). Counting
    steps, not seconds since start, makes every attempt cut whatever the machine's load."""
    import threading

    real, count = torch.optim.SGD.step, [0]

    def step(*args, **kwargs):
        out = real(*args, **kwargs)
        count[0] += 1
        if count[0] == calls:
            threading.Timer(delay, os.kill, (os.getpid(), sig)).start()
        return out

    return lambda: setattr(torch.optim.SGD, "step", step)


def kill_inside_checkpoint_write(calls: int):
    """A fault: the ``calls``-th checkpoint's bytes are half written to its temporary file, then SIGKILL."""
    real, count = torch.save, [0]

    def save(obj, f, *args, **kwargs):
        count[0] += 1
        if count[0] == calls:
            import io

            buf = io.BytesIO()
            real(obj, buf)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real(obj, f, *args, **kwargs)

    return lambda: setattr(torch, "save", save)


def kill_on_replace_of(name: str, calls: int):
    """A fault: SIGKILL just before the ``calls``-th rename onto a file called ``name`` (its new version is
    complete in the temporary file, the old one still in place)."""
    real, count = os.replace, [0]

    def replace(src, dst, *args, **kwargs):
        if os.path.basename(dst) == name:
            count[0] += 1
            if count[0] == calls:
                os.kill(os.getpid(), signal.SIGKILL)
        return real(src, dst, *args, **kwargs)

    return lambda: setattr(os, "replace", replace)


def outcome(run_dir):
    state = load_checkpoint(run_dir / "last.pt")
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]
    return state, rows


def assert_same_run(run_dir, ref_dir):
    (state, rows), (ref, ref_rows) = outcome(run_dir), outcome(ref_dir)
    assert rows == ref_rows
    for key in ("epoch", "epoch_step", "step", "best_top1", "epoch_stats"):
        assert state[key] == ref[key], key
    for name, value in ref["model"].items():
        assert torch.equal(state["model"][name], value), name
    assert state["optimizer"]["param_groups"] == ref["optimizer"]["param_groups"]
    for index, buffers in ref["optimizer"]["state"].items():
        for name, value in buffers.items():
            assert torch.equal(state["optimizer"]["state"][index][name], value), (index, name)
    assert not [p.name for p in run_dir.iterdir() if ".tmp" in p.name]


@pytest.fixture(scope="module", autouse=True)
def _warm():
    """Import what the first optimizer imports (torch._dynamo, seconds) once here, not in every forked child."""
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


KILLABLE = dict(subset=256, val_subset=64, checkpoint_every="1", resume="auto")  # 8 steps an epoch, each saved


@pytest.fixture
def kill_cfg(run_config, tmp_path):
    return run_config(tmp_path / "run", **KILLABLE)


@pytest.fixture(scope="module")
def reference(run_config, tiny_model, tmp_path_factory):
    """The uninterrupted run, once for the module (every attempt's run is compared with it)."""
    out = tmp_path_factory.mktemp("kill") / "reference"
    assert attempt(run_config(out, **KILLABLE), tiny_model) == 0
    return out


@pytest.mark.parametrize("fault", [
    pytest.param(lambda: kill_self_after(torch.optim.SGD, "step", 5), id="right-after-optimizer-step"),
    pytest.param(lambda: kill_self_after(torch.optim.SGD, "step", 8), id="after-the-last-step-of-an-epoch"),
    pytest.param(lambda: kill_inside_checkpoint_write(3), id="during-a-checkpoint-write"),
    pytest.param(lambda: kill_on_replace_of("last.pt", 9), id="before-the-epoch-checkpoint-rename"),
    pytest.param(lambda: kill_on_replace_of("metrics.csv", 1), id="while-metrics-csv-is-replaced"),
])
def test_sigkill_at_the_worst_moments_then_resume_is_exact(kill_cfg, tiny_model, reference, fault):
    assert attempt(kill_cfg, tiny_model, fault()) == -signal.SIGKILL
    assert attempt(kill_cfg, tiny_model) == 0
    assert_same_run(Path(kill_cfg.out), reference)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_at_many_random_moments_the_resumed_run_is_exact(kill_cfg, tiny_model, reference, sig):
    rng, kills, codes = random.Random(0), 0, []
    while len(codes) < 40:  # 16 steps in all; each attempt advances by a few
        fault = signal_self_during_step(rng.randint(1, 3), rng.uniform(0.0, 0.02), sig)
        code = attempt(kill_cfg, tiny_model, fault)
        codes.append(code)
        if code == 0:
            break
        assert code in ((-signal.SIGKILL,) if sig == signal.SIGKILL else (4, -signal.SIGTERM)), codes
        kills += 1
    assert codes[-1] == 0 and kills >= 3, codes  # the run finished, and the attempts really were cut
    assert_same_run(Path(kill_cfg.out), reference)
