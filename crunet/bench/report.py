"""The benchmark's rows as a table on screen, CSV or JSON."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from crunet.bench.runner import Row

COLUMNS = ("model", "mode", "batch", "input", "dtype", "layout", "variant", "img/s", "min-max", "ms", "GMAC/img",
           "GMAC/s", "roof", "RSS MiB", "ratio", "best")


def _gpu(rows: list[Row]) -> bool:
    return any("peak_gpu_mib" in r.extra for r in rows)


def _cells(row: Row, gpu: bool = False) -> tuple[str, ...]:
    ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
    best = f"{row.ratio_best:.2f}" if row.ratio_best is not None else "-"
    c = row.case
    return (c.model, c.mode, str(c.batch), f"{c.in_chans}x{c.size}x{c.size}", c.dtype, c.layout,
            c.variant, f"{row.img_s:.2f}", f"{row.img_s_min:.2f}-{row.img_s_max:.2f}", f"{row.ms_median:.1f}",
            f"{row.gmacs_per_img:.3f}", f"{row.gmac_s:.1f}", f"{row.roofline:.0%}", f"{row.peak_rss_mib:.0f}",
            *((f"{row.extra.get('peak_gpu_mib', 0):.0f}",) if gpu else ()), ratio, best)


def format_table(rows: list[Row], meta: dict | None = None, markdown: bool = False) -> str:
    """A fixed-width table (or a Markdown one); ``ratio``/``best`` are against the reference named below it."""
    gpu = _gpu(rows)
    columns = (*COLUMNS[:-2], "GPU MiB", *COLUMNS[-2:]) if gpu else COLUMNS
    body = [columns, *(_cells(r, gpu) for r in rows)]
    if markdown:
        lines = ["| " + " | ".join(body[0]) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body[1:]]
    else:
        widths = [max(len(cells[i]) for cells in body) for i in range(len(columns))]
        lines = ["  ".join(c.ljust(w) if i < 7 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(cells, widths, strict=True))) for cells in body]
    if rows and rows[0].ref:
        lines.append(f"ratio: img/s over {rows[0].ref}'s in the same layout and variant (ratio of medians); "
                     f"best: over {rows[0].ref}'s fastest layout")
    if meta:
        rates = ", ".join(f"{d} {r:.1f}" for d, r in meta["dense_conv_gmac_s"].items())
        lines.append(f"roof: achieved GMAC/s over the dense 3x3 conv rate measured in this run ({rates} GMAC/s); "
                     f"train counts 3x the forward MACs. RSS: the process's peak resident memory while the case ran "
                     f"(sampled), all models of the run included. torch {meta['torch']}, {meta['threads']} threads, "
                     f"{meta['repeats']} timed runs after {meta['warmup']} warm-up")
        if str(meta.get("device", "cpu")).startswith("cuda"):
            lines.append(f"device: {meta['device']} ({meta.get('device_name')}, CUDA {meta.get('cuda')}); timed runs "
                         f"are bracketed by torch.cuda.synchronize; GPU MiB: torch.cuda.max_memory_allocated over the "
                         f"case's runs (reset before each)")
    return "\n".join(lines)


def write_csv(rows: list[Row], path: str | Path) -> None:
    dicts = [r.as_dict() for r in rows]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dicts[0]) if dicts else ["model"])
        writer.writeheader()
        writer.writerows(dicts)


def write_json(rows: list[Row], meta: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps({"meta": meta, "rows": [r.as_dict() for r in rows]}, indent=2) + "\n")
