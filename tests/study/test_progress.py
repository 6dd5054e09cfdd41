"""`crunet study list`: each run's state (done, running, stopped part-way, to do) from the CSV and the run
directories, with the worker's recorded process id telling running from stopped."""

import json
import os
import subprocess
import sys

import pytest

from crunet.cli.main import main
from crunet.study.grid import RunSpec, tier3_option
from crunet.study.progress import WORKER_MODULE, record_owner, run_state
from crunet.study.results_csv import append_row

SPEC = RunSpec("fashion-mnist", "preresnet_small", 0, tier3_option(20))


def _started(runs, epochs_done: int, owner: str | None, checkpoint: bool = True,
             epoch_seconds: list[float] | None = None) -> None:
    """A run directory as a worker leaves it: config, ``epochs_done`` metrics rows, a checkpoint, the lock file."""
    out = runs / SPEC.key
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps({"model": SPEC.model, "epochs": 20}))
    times = epoch_seconds or [""] * epochs_done
    (out / "metrics.csv").write_text("epoch,val_top1,epoch_seconds\n" + "".join(
        f"{e},90.0,{t}\n" for e, t in zip(range(1, epochs_done + 1), times, strict=True)))
    if checkpoint:
        (out / "last.pt").write_bytes(b"")
    if owner is not None:
        (runs / (SPEC.key + ".lock")).write_text(owner)


@pytest.fixture
def worker_like():
    """A live process whose command line names the study worker, as a real worker's does."""
    code = "import time; print('ready', flush=True); time.sleep(120)"
    proc = subprocess.Popen([sys.executable, "-c", code, WORKER_MODULE], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"  # Popen can return while the kernel still execs (an empty cmdline)
    yield proc
    proc.kill()
    proc.wait()


def test_done_and_todo(tmp_path):
    assert run_state(SPEC, tmp_path, {SPEC.key}).text == "done"
    assert run_state(SPEC, tmp_path, set()).text == "todo"


def test_a_run_whose_worker_lives_is_running(tmp_path, worker_like):
    _started(tmp_path, 3, f"{worker_like.pid}\n")
    assert run_state(SPEC, tmp_path, set()).text == "running, 3 of 20 epochs done"  # no epoch times logged


def test_a_running_run_says_how_long_it_has_left_at_its_median_pace(tmp_path, worker_like):
    _started(tmp_path, 3, f"{worker_like.pid}\n", epoch_seconds=[20.0, 180.0, 200.0])  # the first resumed part-way
    assert run_state(SPEC, tmp_path, set()).text == "running, 3 of 20 epochs done, about 51 min left"  # 17 x 180 s


def test_a_run_whose_worker_is_gone_is_stopped_and_resumes(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _started(tmp_path, 7, f"{dead.pid}\n")
    assert run_state(SPEC, tmp_path, set()).text == "stopped after 7 of 20 epochs (resumes)"


def test_a_live_process_that_is_not_a_worker_does_not_make_a_run_running(tmp_path):
    _started(tmp_path, 7, f"{os.getpid()}\n")  # pytest: alive, but a reused id, not the run's worker
    expected = "stopped after 7 of 20 epochs (resumes)" if os.path.isdir("/proc") else "running, 7 of 20 epochs done"
    assert run_state(SPEC, tmp_path, set()).text == expected


def test_a_lock_without_an_id_says_it_cannot_tell(tmp_path):
    _started(tmp_path, 2, "")
    assert run_state(SPEC, tmp_path, set()).text.startswith("started, 2 of 20 epochs done (running or stopped")


def test_a_directory_without_a_checkpoint_starts_again(tmp_path):
    _started(tmp_path, 0, None, checkpoint=False)
    assert run_state(SPEC, tmp_path, set()).text == "todo"


def test_a_worker_records_its_id_in_the_lock_it_holds(tmp_path):
    lock = tmp_path / "run.lock"
    lock.write_text("12345678901\n")  # a longer id left by an earlier worker: replaced, not overwritten in part
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT)
    record_owner(fd)
    os.close(fd)
    assert lock.read_text() == f"{os.getpid()}\n"


def test_study_list_prints_each_run_and_the_counts(checked_rates, capsys, worker_like):
    results, runs = checked_rates, checked_rates / "runs"
    done = RunSpec("fashion-mnist", "preresnet_small", 1, tier3_option(20))
    append_row(results / "tier3.csv", {"key": done.key, "model": done.model})
    _started(runs, 4, f"{worker_like.pid}\n")
    assert main(["study", "list", "tier3", "--results", str(results), "--runs", str(runs)]) == 0
    out = capsys.readouterr().out
    assert f"{done.key}: done\n" in out and f"{SPEC.key}: running, 4 of 20 epochs done\n" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("grid tier3: ") and "1 done" in last and "1 running" in last and "todo" in last
    argv = ["study", "list", "tier3", "--results", str(results), "--runs", str(runs), "--model", "resnet32_cifar"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    # 3 seeds at E and seed 0 at 2E, then the counts
    assert len(lines) == 5 and all("/resnet32_cifar/" in line for line in lines[:-1])
