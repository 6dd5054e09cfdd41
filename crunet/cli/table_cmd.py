"""``crunet table``: the papers' size/cost columns (CRU-Net Tables 1-5, DSFB) beside ours."""

from __future__ import annotations

import argparse
import csv
import io
import json

from crunet.analysis.paper_tables import COLUMNS, paper_table_rows


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("table", help="the papers' size/cost tables (CRU-Net, DSFB) beside our models")
    p.add_argument("--format", choices=("md", "csv", "json"), default="md")
    p.add_argument("--paper", choices=("cru", "dsfb", "all"), default="all",
                   help="which paper's rows: CRU-Net, Deeply Shared Filter Bases, or both (default)")
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
    rows = paper_table_rows() if args.paper in ("cru", "all") else []
    if args.paper in ("dsfb", "all"):
        from crunet.analysis.dsfb_tables import dsfb_table_rows

        rows += dsfb_table_rows()
    print(render(rows, args.format))
    return 0
