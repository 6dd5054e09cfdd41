"""``crunet table``: the paper's size/cost columns (Tables 1-5) beside ours."""

from __future__ import annotations

import argparse
import csv
import io
import json

from crunet.analysis.paper_tables import COLUMNS, paper_table_rows


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("table", help="the paper's Tables 1-5 (size, cost) beside our models")
    p.add_argument("--format", choices=("md", "csv", "json"), default="md")
    p.set_defaults(func=run)


def _cell(value) -> str:
    return "" if value is None else str(value)


def render(rows: list[dict], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue().rstrip("\n")
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    print(render(paper_table_rows(), args.format))
    return 0
