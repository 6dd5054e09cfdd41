"""Every reader of the study's own records (grid CSVs, per-epoch metrics, a run's state files and sittings) refuses a
torn or malformed record by file and line; the committed CSVs, which lack the newest columns, still read."""

from pathlib import Path

import pytest

from crunet.study.results_csv import (
    COLUMNS,
    LATER_COLUMNS,
    STUDY_CSVS,
    append_row,
    done_keys,
    merge_results,
    read_epochs,
    read_json,
    read_rows,
)
from crunet.study.worker import cpu_share

REPO = Path(__file__).resolve().parents[2]


def test_a_torn_grid_row_is_refused_by_every_reader(tmp_path):
    path = tmp_path / "tier1.csv"
    append_row(path, {"key": "a", "test_top1": 90.0})
    with open(path, "a") as f:
        f.write("b,fashion-mnist,x")  # killed mid-write
    for read in (read_rows, done_keys):
        with pytest.raises(ValueError, match=r"tier1\.csv:3: malformed or torn row"):
            read(path)


def test_a_required_column_left_empty_is_refused(tmp_path):
    path = tmp_path / "lr-check.csv"
    append_row(path, {"key": "a", "model": "m", "option": "lr=0.1"})
    assert [r["key"] for r in read_rows(path)] == ["a"]  # the key is all a row must have
    with pytest.raises(ValueError, match=r"lr-check\.csv:2: malformed row \(empty test_top1\)"):
        read_rows(path, ("key", "test_top1"))


def test_per_epoch_metrics_refuse_a_torn_line(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,val_top1\n1,90.5\n2")
    assert read_epochs(tmp_path / "absent.csv") == []
    with pytest.raises(ValueError, match=r"metrics\.csv:3: malformed or torn row"):
        read_epochs(path)
    path.write_text("epoch,val_top1\n1,90.5\n2,ninety\n")
    with pytest.raises(ValueError, match=r"metrics\.csv:3: malformed row \(val_top1='ninety' is not a number\)"):
        read_epochs(path)


def test_run_state_refuses_a_torn_file(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text('{\n  "final_val": {"top1": 9')
    with pytest.raises(ValueError, match=r"summary\.json:2: malformed or torn record"):
        read_json(path)
    path.write_text('{"final_val": {"top1": 90.0}}')
    assert read_json(path) == {"final_val": {"top1": 90.0}}


def test_a_torn_sittings_line_is_refused_by_file_and_line(tmp_path):
    sittings = tmp_path / "sittings.txt"
    sittings.write_text("started\n90 100\nstarted\n5")
    with pytest.raises(ValueError, match=r"sittings\.txt:4: malformed or torn record"):
        cpu_share(sittings)


def test_merge_refuses_a_torn_epochs_file_before_copying_it(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    append_row(theirs / "tier1.csv", {"key": "fashion-mnist/x/-/seed0", "test_top1": 92.0})
    (theirs / "epochs").mkdir()
    (theirs / "epochs" / "fashion-mnist__x__-__seed0.csv").write_text("epoch,val_top1\n1")
    with pytest.raises(ValueError, match=r"seed0\.csv:2: malformed or torn row"):
        merge_results(theirs, ours)
    assert not (ours / "tier1.csv").exists() and not (ours / "epochs").exists()


def test_the_committed_csvs_read_without_their_later_columns():
    for name in STUDY_CSVS:
        path = REPO / "results" / name
        if not path.is_file():
            continue
        header = path.read_text().split("\n", 1)[0].split(",")
        assert set(COLUMNS) - set(header) <= set(LATER_COLUMNS)  # only optional columns may be absent
        rows = read_rows(path, ("key", "test_top1"))
        assert rows and all(list(r) == list(COLUMNS) for r in rows)
        assert all(r[c] == "" for r in rows for c in set(COLUMNS) - set(header))
