"""The compress benchmark's report (``results/compress.md``): test top-1 of every arm against the training epochs
spent after the teacher, and at each budget whether sharing beats thinning (Welch's interval over seeds).

    .venv/bin/python -m crunet.study.compress_report [--grid compress|compress-small] [--results results]

Reads the grid's CSV (``compress.csv``, or ``compress-small.csv``: the same arms on 3,000 training images; arm (a)
runs there too, in float32 as every arm) and writes the report beside it, named as the grid. A cell with fewer than two
seeds has no interval; the report says how many seeds each has.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crunet.io.atomic import atomic_open
from crunet.study.compress_grid import FINE_TUNE_EPOCHS, SCALES, arm_options
from crunet.study.grid import TIER3_EPOCHS
from crunet.study.results_csv import grid_csv, read_rows
from crunet.study.seed_stats import difference_interval, mean_std

ARMS = {"a": "DSFB S16U1 from scratch, no teacher", "b_svd": "teacher converted into DSFB (svd bases)",
        "b_data": "teacher converted into DSFB (data-aware bases)", "c": "DSFB S16U1 from scratch, distilled",
        "d": "thin ResNet-32 from scratch, distilled", "e": "thin ResNet-32 from the teacher's largest filters",
        "a_cru": "CRU from scratch, no teacher", "b_cru": "ResNeXt teacher factorized into CRU",
        "c_cru": "CRU from scratch, distilled", "d_cru": "thin ResNeXt from scratch, distilled",
        "e_cru": "thin ResNeXt from the teacher's largest channels"}
# at each budget: (sharing arm, thinning arm) compared as test error, sharing minus thinning
COMPARISONS = (("b_svd", "e"), ("b_data", "e"), ("c", "d"), ("b_cru", "e_cru"), ("c_cru", "d_cru"))


def cells(results: Path, grid: str = "compress") -> dict[tuple[str, int], list[float]]:
    """(arm, epochs after the teacher) -> the test top-1 of its seeds in grid ``grid``'s CSV."""
    rows = read_rows(grid_csv(results, grid), ("key", "model", "option", "test_top1"))
    found: dict[tuple[str, int], list[float]] = {}
    for epochs in (*FINE_TUNE_EPOCHS, TIER3_EPOCHS):
        for arm, members in arm_options(epochs, SCALES[grid]).items():
            wanted = {(model, option) for model, option in members}
            found[(arm, epochs)] = [float(r["test_top1"]) for r in rows if (r["model"], r["option"]) in wanted]
    return found


def label(arm: str) -> str:
    """The arm's letter in the issue's list, with ``cru`` for the CRU pair's: b_svd -> b, b_cru -> b cru."""
    return arm[0] + (" cru" if arm.endswith("_cru") else "")


def report(results: Path, grid: str = "compress") -> str:
    found = cells(results, grid)
    scale = (f"the first {SCALES[grid]:,} training images of a fixed shuffle (the teacher's too), validated on "
             f"{SCALES[grid]:,} test images" if SCALES[grid] else "all 60,000 training images, the 10,000 test images")
    lines = ["# Sharing as compression: DSFB S16U1 against a thin ResNet-32 (from a trained ResNet-32), and CRU "
             "against a thin ResNeXt (from a trained preresnext_small)", "",
             f"Regenerate: `.venv/bin/python -m crunet.study.compress_report --grid {grid}`; the rows: `crunet study "
             f"run {grid}` (docs/compress.md). Test top-1 (%) on Fashion-MNIST, {scale}, float32, mean ± sd over "
             "seeds (n), by training epochs spent after the teacher.", "", "| arm | epochs | n | test top-1 |",
             "|---|---:|---:|---:|"]
    order = list(ARMS)  # by budget, then the DSFB pair's arms before the CRU pair's
    for (arm, epochs), values in sorted(found.items(), key=lambda item: (item[0][1], order.index(item[0][0]))):
        mean, sd = mean_std(values) if values else (float("nan"), float("nan"))
        lines.append(f"| ({label(arm)}) {ARMS[arm]} | {epochs} | {len(values)} | "
                     + (f"{mean:.2f} ± {sd:.2f}" if len(values) > 1 else f"{mean:.2f}" if values else "-") + " |")
    lines += ["", "Sharing minus thinning, test error (points; negative: sharing better), Welch's 95% interval:", "",
              "| budget (epochs) | sharing | thinning | difference | interval | verdict |",
              "|---:|---|---|---:|---|---|"]
    for epochs in (*FINE_TUNE_EPOCHS, TIER3_EPOCHS):
        for share, thin in COMPARISONS:
            a, b = found.get((share, epochs), []), found.get((thin, epochs), [])
            if not a and not b:
                continue
            errors_a, errors_b = [100 - v for v in a], [100 - v for v in b]
            low, high = difference_interval(errors_a, errors_b)
            diff = (mean_std(errors_a)[0] - mean_std(errors_b)[0]) if a and b else float("nan")
            verdict = ("sharing better" if high < 0 else "thinning better" if low > 0 else
                       "undecided" if low == low else f"too few seeds ({len(a)} and {len(b)})")
            lines.append(f"| {epochs} | ({label(share)}) {ARMS[share]} | ({label(thin)}) {ARMS[thin]} | {diff:+.2f} | "
                         f"{low:+.2f} to {high:+.2f} | {verdict} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="write results/GRID.md from the compress grid's rows")
    parser.add_argument("--grid", choices=sorted(SCALES), default="compress")
    parser.add_argument("--results", default="results")
    args = parser.parse_args()
    out = Path(args.results) / f"{args.grid}.md"
    with atomic_open(out, "w") as f:
        f.write(report(Path(args.results), args.grid))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
