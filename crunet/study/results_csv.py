"""The study's record: one CSV row per finished run, appended atomically, so a killed grid loses no finished run and
two runs finishing at once never interleave their rows. A column added in a later version (``LATER_COLUMNS``) reads
as "" in older files, and the first row appended to such a file rewrites its header (in place, under the lock)."""

from __future__ import annotations

import csv
import fcntl
import io
import os
import shutil
from pathlib import Path

COLUMNS = ("key", "dataset", "model", "option", "seed", "params", "macs", "test_top1", "test_top5", "test_loss",
           "best_epoch", "best_top1", "final_epoch", "lr", "train_seconds", "images_per_s", "cpu_share", "threads",
           "concurrent_runs", "git_commit", "torch_version", "finished_at", "device", "processor")
# absent from the first files: "" there (every run before "device" was on the CPU; "processor": not recorded)
LATER_COLUMNS = ("device", "processor")
STUDY_CSVS = ("lr-check.csv", "tier1.csv", "tier2.csv", "tier3.csv")  # the fairness check and the grids


def epochs_file(key: str) -> str:
    """The name of a run's per-epoch metrics file in the results' ``epochs/`` folder."""
    return key.replace("/", "__") + ".csv"


def read_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in COLUMNS if rows and c not in rows[0] and c not in LATER_COLUMNS]
    if missing:
        raise ValueError(f"{path} is not a study CSV (missing columns {', '.join(missing)})")
    return [{c: row.get(c) or "" for c in COLUMNS} for row in rows]


def done_keys(path: str | os.PathLike) -> set[str]:
    return {row["key"] for row in read_rows(path)}


def append_row(path: str | os.PathLike, row: dict) -> None:
    """Append one row (and the header, if the file is new) as one write under an exclusive lock."""
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown study columns: {', '.join(sorted(unknown))}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
        old_rows = _rows_under_an_older_header(path)
        if os.fstat(fd).st_size == 0 or old_rows is not None:
            writer.writeheader()
            writer.writerows(old_rows or [])
            os.ftruncate(fd, 0)  # same file, same lock: a writer waiting for it appends after this
        writer.writerow({c: _fmt(row.get(c, "")) for c in COLUMNS})
        os.write(fd, buf.getvalue().encode())
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock


def _rows_under_an_older_header(path: Path) -> list[dict[str, str]] | None:
    """The file's rows when its header lacks ``LATER_COLUMNS`` (to be written again under the current header)."""
    with open(path, newline="") as f:
        header = f.readline().rstrip("\r\n").split(",")
    if header == [""] or header == list(COLUMNS):
        return None
    if [c for c in COLUMNS if c not in LATER_COLUMNS] != [c for c in header if c not in LATER_COLUMNS]:
        raise ValueError(f"{path}: its header is not the study's ({', '.join(COLUMNS)}); not appending to it")
    return read_rows(path)


def _fmt(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def merge_results(other: Path, results: Path, names: tuple[str, ...] = STUDY_CSVS) -> dict[str, int]:
    """Append the rows of ``other``'s grid CSVs whose runs ``results`` lacks, with their per-epoch metrics (runs
    done on another machine); a run both hold keeps our row. Returns the rows added per file present in ``other``."""
    added = {}
    for name in names:
        if not (other / name).is_file():
            continue
        ours = done_keys(results / name)
        added[name] = 0
        for row in read_rows(other / name):
            if row["key"] in ours:
                continue
            epochs = epochs_file(row["key"])
            if (other / "epochs" / epochs).is_file():
                (results / "epochs").mkdir(parents=True, exist_ok=True)
                shutil.copyfile(other / "epochs" / epochs, results / "epochs" / epochs)
            append_row(results / name, row)
            ours.add(row["key"])
            added[name] += 1
    return added
