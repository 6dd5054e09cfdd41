import csv
import fcntl
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from crunet.study.grid import RunSpec
from crunet.study.results_csv import COLUMNS, LATER_COLUMNS, append_row, read_rows
from crunet.study.runner import GridPaths, run_grid
from crunet.study.worker import cpu_share


def _paths(tmp_path) -> GridPaths:
    return GridPaths(tmp_path / "results" / "grid.csv", tmp_path / "results" / "epochs", tmp_path / "runs")


def _append_many(path, worker: int) -> None:
    for i in range(40):
        append_row(path, {"key": f"w{worker}/run{i}", "model": "x" * 300, "seed": i})


def test_rows_appended_from_several_processes_never_interleave(tmp_path):
    path = tmp_path / "rows.csv"
    # fork: the writers start at once (spawn would re-import torch in each, which under load can take minutes)
    procs = [multiprocessing.get_context("fork").Process(target=_append_many, args=(path, w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    rows = read_rows(path)
    assert sorted(r["key"] for r in rows) == sorted(f"w{w}/run{i}" for w in range(3) for i in range(40))
    assert all(r["model"] == "x" * 300 and list(r) == list(COLUMNS) for r in rows)


def test_a_file_from_before_a_later_column_reads_and_is_upgraded_by_the_next_row(tmp_path):
    path = tmp_path / "rows.csv"
    old = [c for c in COLUMNS if c not in LATER_COLUMNS]
    path.write_text(",".join(old) + "\n" + ",".join("a" if c == "key" else "1" for c in old) + "\n")
    assert [r["key"] for r in read_rows(path)] == ["a"] and read_rows(path)[0]["device"] == ""
    append_row(path, {"key": "b", "device": "cpu"})
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)  # the header now names every column
    rows = read_rows(path)
    assert [(r["key"], r["seed"], r["device"]) for r in rows] == [("a", "1", ""), ("b", "", "cpu")]
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("name,score\nx,1\n")
    with pytest.raises(ValueError, match="header is not the study's"):
        append_row(foreign, {"key": "c"})
    assert foreign.read_text() == "name,score\nx,1\n"  # left as it was


def test_unknown_column_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown study columns: accuracy"):
        append_row(tmp_path / "rows.csv", {"key": "a", "accuracy": 1})


@pytest.mark.slow
def test_grid_runs_two_side_by_side_records_each_run_and_skips_it_next_time(tmp_path, tiny_recipes):
    specs = [RunSpec("tiny", "preresnet_small", 0), RunSpec("tiny", "preresnet_small", 1, "lr=0.05")]
    paths = _paths(tmp_path)
    lines = []
    counts = run_grid(specs, paths, workers=2, threads=1, recipes=tiny_recipes, say=lines.append)
    assert counts == {"finished": 2, "failed": 0, "stopped": 0, "skipped": 0, "elsewhere": 0}
    rows = {r["key"]: r for r in read_rows(paths.csv)}
    assert set(rows) == {s.key for s in specs}
    row = rows[specs[1].key]
    assert float(row["lr"]) == 0.05 and row["concurrent_runs"] == "2" and row["threads"] == "1"
    assert int(row["params"]) == 309_354 and 9.6e6 < int(row["macs"]) < 9.8e6  # the README's table
    assert row["final_epoch"] == "2" and 0 <= float(row["test_top1"]) <= 100
    assert 0 < float(row["cpu_share"]) <= 1.1  # CPU seconds over wall seconds of its one thread
    assert row["device"] == "cpu"
    assert any("ETA" in line and specs[0].key in line for line in lines)
    with open(paths.epochs / (specs[0].key.replace("/", "__") + ".csv"), newline="") as f:
        epochs = list(csv.DictReader(f))
    assert len(epochs) == 2 and "grad_stages.0.factors.0.reduce" not in epochs[0]  # preresnet shares nothing
    again = run_grid(specs, paths, workers=2, threads=1, recipes=tiny_recipes, say=lines.append)
    assert again == {"finished": 0, "failed": 0, "stopped": 0, "skipped": 2, "elsewhere": 0}
    assert len(read_rows(paths.csv)) == 2


@pytest.mark.slow
def test_killed_grid_resumes_and_records_every_run_once(tmp_path, tiny_recipes, fmnist):
    specs = [RunSpec("tiny", "preresnet_small", s) for s in range(3)]
    paths = _paths(tmp_path)
    script = textwrap.dedent(f"""
        from pathlib import Path
        from crunet.study.grid import Recipe, RunSpec
        from crunet.study.runner import GridPaths, run_grid
        recipes = {{"tiny": Recipe(data={str(fmnist)!r}, epochs=2, settings={tiny_recipes['tiny'].settings!r})}}
        specs = [RunSpec("tiny", "preresnet_small", s) for s in range(3)]
        run_grid(specs, GridPaths(Path({str(paths.csv)!r}), Path({str(paths.epochs)!r}), Path({str(paths.runs)!r})),
                 workers=1, threads=1, recipes=recipes)
    """)
    grid = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 300
    while len(read_rows(paths.csv)) < 1 and time.time() < deadline:
        time.sleep(0.2)
    grid.send_signal(signal.SIGKILL)  # the run in flight is told by the kernel (parent-death signal)
    grid.wait(30)
    assert 1 <= len(read_rows(paths.csv)) < 3
    counts = run_grid(specs, paths, workers=1, threads=1, recipes=tiny_recipes, say=lambda _: None)
    keys = [r["key"] for r in read_rows(paths.csv)]
    assert sorted(keys) == sorted(s.key for s in specs) and counts["failed"] == 0


def test_a_run_stopped_by_a_signal_is_reported_as_resumable_not_failed(tmp_path, tiny_recipes, monkeypatch):
    from crunet.study import runner

    def stopped_worker(*_):  # what a worker stopped by SIGTERM exits with, after its checkpoint
        return subprocess.Popen([sys.executable, "-c", f"raise SystemExit({runner.STOPPED})"])

    monkeypatch.setattr(runner, "_launch", stopped_worker)
    lines = []
    counts = run_grid([RunSpec("tiny", "preresnet_small", 0)], _paths(tmp_path), recipes=tiny_recipes,
                      say=lines.append)
    assert counts["stopped"] == 1 and counts["failed"] == 0
    assert "STOPPED" in lines[-1] and "resumes it" in lines[-1] and "FAILED" not in lines[-1]


@pytest.mark.slow
def test_a_grid_started_in_the_background_stops_on_ctrl_c_and_resumes(tmp_path, tiny_recipes, fmnist):
    # `cmd &` in a shell starts the grid with SIGINT ignored; Ctrl-C's SIGINT to the process group must still stop
    # the grid (not only its runs, which the grid would then count as failed while starting the next ones)
    specs = [RunSpec("long", "preresnet_small", s) for s in range(2)]
    paths = _paths(tmp_path)
    settings = {**tiny_recipes["tiny"].settings, "subset": 256}
    script = textwrap.dedent(f"""
        import signal
        from pathlib import Path
        from crunet.study.grid import Recipe, RunSpec
        from crunet.study.runner import GridPaths, run_grid
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        recipes = {{"long": Recipe(data={str(fmnist)!r}, epochs=200, settings={settings!r})}}
        specs = [RunSpec("long", "preresnet_small", s) for s in range(2)]
        run_grid(specs, GridPaths(Path({str(paths.csv)!r}), Path({str(paths.epochs)!r}), Path({str(paths.runs)!r})),
                 workers=1, threads=1, recipes=recipes)
    """)
    grid = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    log = paths.runs / (specs[0].key + ".log")
    deadline = time.time() + 300
    try:
        while not (log.is_file() and "epoch 1/200" in log.read_text()) and time.time() < deadline:
            time.sleep(0.2)
        os.killpg(grid.pid, signal.SIGINT)  # Ctrl-C: the whole process group
        out, _ = grid.communicate(timeout=120)
    finally:
        if grid.poll() is None:
            os.killpg(grid.pid, signal.SIGKILL)
    assert grid.returncode != 0 and "grid stopped" in out and "FAILED" not in out
    assert not (paths.runs / specs[1].key).exists()  # the grid did not go on to the next run
    assert (paths.runs / specs[0].key / "last.pt").is_file() and not paths.csv.exists()


@pytest.mark.slow
def test_two_grids_sharing_one_csv_split_the_runs_and_record_each_once(tmp_path, tiny_recipes):
    specs = [RunSpec("tiny", "preresnet_small", s) for s in range(3)]
    paths = _paths(tmp_path)
    counts, lines = [None, None], [[], []]

    def grid(i: int) -> None:
        counts[i] = run_grid(specs, paths, workers=1, threads=1, recipes=tiny_recipes, say=lines[i].append)

    grids = [threading.Thread(target=grid, args=(i,)) for i in range(2)]
    for g in grids:
        g.start()
    for g in grids:
        g.join(600)
    assert sorted(r["key"] for r in read_rows(paths.csv)) == sorted(s.key for s in specs)  # each run once
    assert [c["failed"] for c in counts] == [0, 0]
    assert counts[0]["finished"] + counts[1]["finished"] == 3  # every run trained by exactly one grid...
    assert counts[0]["elsewhere"] + counts[1]["elsewhere"] == 3  # ...and left by the other
    assert not any("FAILED" in line for line in lines[0] + lines[1])


def test_a_run_recorded_or_locked_elsewhere_is_not_trained_again(tmp_path, tiny_recipes):
    from crunet.study.worker import RunElsewhere, run_one

    spec, paths, recipe = RunSpec("tiny", "preresnet_small", 0), _paths(tmp_path), tiny_recipes["tiny"]
    lock = paths.runs / (spec.key + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a worker in another process would hold it (flock locks are per open file)
    with pytest.raises(RunElsewhere, match="already running in another process"):
        run_one(spec, recipe, paths.csv, paths.runs, paths.epochs, 1, 1)
    os.close(fd)
    append_row(paths.csv, {"key": spec.key, "model": spec.model})
    with pytest.raises(RunElsewhere, match="recorded by another process"):
        run_one(spec, recipe, paths.csv, paths.runs, paths.epochs, 1, 1)
    assert len(read_rows(paths.csv)) == 1 and not (paths.runs / spec.key / "last.pt").exists()


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_starts_again(tmp_path, tiny_recipes):
    from crunet.study.worker import run_one

    spec, paths = RunSpec("tiny", "preresnet_small", 0), _paths(tmp_path)
    out = paths.runs / spec.key
    out.mkdir(parents=True)
    (out / "config.json").write_text("{")  # what a run killed while starting leaves: no checkpoint
    (out / "sittings.txt").write_text("started\n")
    row = run_one(spec, tiny_recipes["tiny"], paths.csv, paths.runs, paths.epochs, 1, 1)
    assert row["final_epoch"] == 2 and [r["key"] for r in read_rows(paths.csv)] == [spec.key]
    assert (out / "sittings.txt").read_text().count("started") == 1  # the killed sitting went with its directory


def test_missing_data_set_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="data set mnist: .*get-mnist"):
        from crunet.study.grid import Recipe

        run_grid([RunSpec("mnist", "crunet_small", 0)], _paths(tmp_path),
                 recipes={"mnist": Recipe(data=str(tmp_path / "nowhere"), epochs=1)}, say=lambda _: None)


def test_cpu_share_sums_every_sitting_and_is_unknown_after_a_killed_one(tmp_path):
    sittings = tmp_path / "sittings.txt"
    assert cpu_share(sittings) == ""  # never timed
    sittings.write_text("started\n90.0 100.0\nstarted\n50.0 100.0\n")
    assert cpu_share(sittings) == 0.7  # (90 + 50) / (100 + 100), not the last sitting's 0.5
    sittings.write_text("started\n90.0 100.0\nstarted\nstarted\n50.0 100.0\n")
    assert cpu_share(sittings) == ""  # the second sitting was killed: its load is unknown
