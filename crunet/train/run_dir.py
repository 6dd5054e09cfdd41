"""The run directory: config.json (resolved), metrics.csv (a row per epoch), summary.json, curves.png, TensorBoard."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path


def default_run_dir(model: str) -> Path:
    return Path("runs") / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_run_dir(path: str | os.PathLike, resume: bool) -> Path:
    """Every process checks, so that all fail together: a new run never writes over an existing one."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"run directory {path} is a file")
    if not resume and any((path / name).exists() for name in ("metrics.csv", "last.pt")):
        raise ValueError(f"{path} already holds a run; continue it with --resume {path / 'last.pt'} "
                         f"or choose another --out")
    return path


def write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


class RunDir:
    def __init__(self, path: str | os.PathLike, tensorboard: bool = True):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.csv = self.path / "metrics.csv"
        self._tb, self._tb_wanted = None, tensorboard

    def write_config(self, cfg: dict) -> None:
        write_json(self.path / "config.json", cfg)

    def rows(self) -> list[dict]:
        if not self.csv.is_file():
            return []
        with open(self.csv, newline="") as f:
            return list(csv.DictReader(f))

    def append_row(self, row: dict) -> None:
        """Append an epoch; a row with new columns (a resumed run with extra losses) rewrites the header."""
        rows = self.rows()
        columns = list(rows[0].keys()) if rows else []
        columns += [k for k in row if k not in columns]
        with open(self.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows(rows + [{k: _fmt(v) for k, v in row.items()}])
        self._tensorboard(row)

    def keep_epochs(self, done: int) -> None:
        """On resume, keep the rows of the ``done`` epochs the checkpoint had finished, drop later ones."""
        rows = [r for r in self.rows() if int(r["epoch"]) <= done]
        if self.csv.is_file():
            self.csv.unlink()
        for r in rows:
            self.append_row(r)

    def write_summary(self, summary: dict) -> None:
        write_json(self.path / "summary.json", summary)

    def _tensorboard(self, row: dict) -> None:
        if not self._tb_wanted:
            return
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self._tb_wanted = False
                return
            self._tb = SummaryWriter(str(self.path / "tb"))
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self._tb.add_scalar(key, value, int(row["epoch"]))
        self._tb.flush()


def _fmt(v):
    return f"{v:.6g}" if isinstance(v, float) else v
