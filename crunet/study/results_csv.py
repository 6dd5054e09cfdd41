"""The study's records and their one reader. A grid CSV has one row per finished run, appended atomically, so a killed
grid loses no finished run and two runs finishing at once never interleave their rows; a run's per-epoch metrics
(``metrics.csv``, copied to the results' ``epochs/``) and its state files (``summary.json``, ``config.json``) are read
here too. Every reader refuses a torn or malformed record, naming the file and line, instead of reporting on it.

Optional columns (``LATER_COLUMNS``): columns added after the first files were committed. The committed
``lr-check.csv``, ``tier1.csv`` and ``tier2.csv`` lack ``processor`` (the oldest rows ``device`` too); they read as ""
there, and the first row appended to such a file rewrites its header (in place, under the lock). The committed files
are never rewritten otherwise."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crunet.errors import FileFormatError

COLUMNS = ("key", "dataset", "model", "option", "seed", "params", "macs", "test_top1", "test_top5", "test_loss",
           "best_epoch", "best_top1", "final_epoch", "lr", "train_seconds", "images_per_s", "cpu_share", "threads",
           "concurrent_runs", "git_commit", "torch_version", "finished_at", "device", "processor")
# the optional columns, "" where absent: every run before "device" was on the CPU; "processor": not recorded
LATER_COLUMNS = ("device", "processor")
LR_CHECK = "lr-check"  # the fairness check's grid: the rate each family trains at in the others
STUDY_CSVS = (f"{LR_CHECK}.csv", "tier1.csv", "tier2.csv", "tier3.csv")  # the fairness check and the grids
REQUIRED = ("key",)  # what every row holds (a report asks for more: ``required=``)
NUMERIC_COLUMNS = {"seed": int, "params": int, "macs": int, "test_top1": float, "best_epoch": int, "best_top1": float,
                   "train_seconds": float, "images_per_s": float, "cpu_share": float}


def grid_csv(results: str | os.PathLike, grid: str) -> Path:
    """The CSV of grid ``grid`` (one row per finished run) in the results folder ``results``."""
    return Path(results) / f"{grid}.csv"


def epochs_file(key: str) -> str:
    """The name of a run's per-epoch metrics file in the results' ``epochs/`` folder."""
    return key.replace("/", "__") + ".csv"


def read_rows(path: str | os.PathLike, required: tuple[str, ...] = REQUIRED) -> list[dict[str, str]]:
    """The rows of a study CSV, every column present ("" for an optional one the file lacks); none when the file is
    absent. Refuses, by file and line, a record whose field count is not the header's, a ``required`` column left
    empty, or a number that does not parse."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = read_records(path, lambda record: _row_problem(record, required))
    missing = [c for c in COLUMNS if rows and c not in rows[0] and c not in LATER_COLUMNS]
    if missing:
        raise FileFormatError(f"{path} is not a study CSV (missing columns {', '.join(missing)})")
    return [{c: row.get(c) or "" for c in COLUMNS} for row in rows]


def read_epochs(path: str | os.PathLike) -> list[dict[str, str]]:
    """A run's per-epoch metrics (``metrics.csv`` or its copy in ``epochs/``; none when the file is absent), refusing
    a malformed or torn line by file and line."""
    path = Path(path)
    return read_records(path, _epoch_problem) if path.is_file() else []


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """A run's state file (``summary.json``, ``config.json``), refusing a torn or malformed one by file and line."""
    path = Path(path)
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise FileFormatError(f"{path}:{e.lineno}: malformed or torn record ({e.msg}); not using it") from None
    if not isinstance(value, dict):
        raise FileFormatError(f"{path}:1: malformed record (not a JSON object); not using it")
    return value


def read_records(path: Path, problem: Callable[[dict[str, str]], str | None]) -> list[dict[str, str]]:
    """The records of a CSV file as dicts, raising ``ValueError("<path>:<line>: ...")`` at the first one with another
    field count than the header or of which ``problem(record)`` says what is wrong."""
    records = []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        for fields in reader:
            if not fields:  # a blank line: csv.DictReader skips it too
                continue
            if len(fields) != len(header):
                raise FileFormatError(f"{path}:{reader.line_num}: malformed or torn row ({len(fields)} fields, the "
                                      f"header has {len(header)}); not reporting on it")
            record = dict(zip(header, fields, strict=True))
            if reason := problem(record):
                raise FileFormatError(f"{path}:{reader.line_num}: malformed row ({reason}); not reporting on it")
            records.append(record)
    return records


def _row_problem(record: dict[str, str], required: tuple[str, ...]) -> str | None:
    empty = [c for c in required if not record.get(c)]
    if empty:
        return f"empty {', '.join(empty)}"
    for column, kind in NUMERIC_COLUMNS.items():
        if record.get(column) and _unparsed(record[column], kind):
            return f"{column}={record[column]!r} is not a number"
    if record.get("test_top1") and not 0 <= float(record["test_top1"]) <= 100:
        return f"test_top1={record['test_top1']} is not a percentage"
    return None


def _epoch_problem(record: dict[str, str]) -> str | None:
    if _unparsed(record.get("epoch", ""), int):
        return f"epoch={record.get('epoch')!r} is not an epoch"
    for column, value in record.items():
        if (column == "val_top1" or column.startswith("grad_") or column == "orth_penalty") and value \
                and _unparsed(value, float):
            return f"{column}={value!r} is not a number"
    return None


def _unparsed(value: str, kind: type) -> bool:
    try:
        kind(value)
    except ValueError:
        return True
    return False


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
        raise FileFormatError(f"{path}: its header is not the study's ({', '.join(COLUMNS)}); not appending to it")
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
                read_epochs(other / "epochs" / epochs)  # a torn or malformed file is refused before it joins ours
                (results / "epochs").mkdir(parents=True, exist_ok=True)
                shutil.copyfile(other / "epochs" / epochs, results / "epochs" / epochs)
            append_row(results / name, row)
            ours.add(row["key"])
            added[name] += 1
    return added
