"""Records: atomic writes, stale temporary files removed on start, no two runs in one folder."""

import os

import pytest

from crunet.io.atomic import atomic_open
from crunet.train.run_dir import RunDir, default_run_dir


def test_runs_started_in_the_same_second_get_different_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("time.strftime", lambda fmt: "20260101-000000")
    paths = [default_run_dir("m") for _ in range(3)]
    assert len(set(paths)) == 3 and all(p.is_dir() for p in paths)
    assert [p.name for p in paths] == ["m-20260101-000000", "m-20260101-000000-2", "m-20260101-000000-3"]


def test_stale_temporary_files_are_removed_when_a_run_starts(tmp_path):
    for name in (".last.pt.tmp1234", ".metrics.csv.tmp99", "config.json.tmp"):
        (tmp_path / name).write_bytes(b"torn")
    (tmp_path / "last.pt").write_bytes(b"kept")
    run = RunDir(tmp_path, tensorboard=False)
    assert sorted(p.name for p in run.removed) == [".last.pt.tmp1234", ".metrics.csv.tmp99", "config.json.tmp"]
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]


def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("old\n")
    with pytest.raises(OSError, match="disk full"), atomic_open(path) as f:
        f.write("new, half")
        raise OSError("disk full")
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["metrics.csv"]


def test_metrics_rows_widen_and_resume_trims(tmp_path):
    run = RunDir(tmp_path, tensorboard=False)
    run.append_row({"epoch": 1, "val_top1": 10.0})
    run.append_row({"epoch": 2, "val_top1": 20.0, "loss_orth": 0.5})
    assert [r["epoch"] for r in run.rows()] == ["1", "2"] and run.rows()[0]["loss_orth"] == ""
    run.keep_epochs(1)
    assert [r["epoch"] for r in run.rows()] == ["1"]
    run.keep_epochs(0)
    assert not (tmp_path / "metrics.csv").exists()
