"""The three performance targets (README: Performance) in one process; prints Markdown for benchmarks/RESULTS.md.

Run by hand on a quiet machine, with timm present for the peers:
    .venv-timm/bin/python benchmarks/targets.py [--repeats 7] [--json benchmarks/targets.json]
(``.venv/bin/python`` works too: without timm the reference is our own preresnext50_32x4d.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch

from crunet.bench import BenchConfig, format_table, run_bench
from crunet.bench.peers import default_peers


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def configs(repeats: int) -> dict[str, BenchConfig]:
    peers = default_peers()
    common = dict(batches=(8,), warmup=2, repeats=repeats)
    return {
        "inference": BenchConfig(["crunet56"], modes=("infer",), variants=("eager", "deploy", "deploy-shared"),
                                 peers=peers, **common),
        "training": BenchConfig(["preresnext50_32x4d"], modes=("train",), peers=peers[:1], **common),
        "small": BenchConfig(["crunet_small"], modes=("train",), sizes=(28,), in_chans=1, num_classes=10,
                             peers=["preresnext_small"], batches=(8, 128), warmup=2, repeats=repeats),
    }


def targets(results: dict[str, list]) -> list[tuple[str, float, float]]:
    """(target, measured ratio of medians, goal) for each part that was run."""
    out = []
    infer = results.get("inference", [])
    if infer:
        deploy_best = max(r.img_s for r in infer if r.case.model == "crunet56" and r.case.variant == "deploy")
        ref = infer[0].ref
        ref_best = max(r.img_s for r in infer if r.case.model == ref and r.case.variant == "eager")
        out.append((f"crunet56 deploy (best layout) / {ref} eager (best layout), infer b8 224", deploy_best / ref_best,
                    0.9))
    for r in results.get("training", []):
        if r.case.model == "preresnext50_32x4d":
            out.append((f"preresnext50_32x4d / {r.ref} train step b8 224, {r.case.layout}", r.ratio, 1.0))
    for r in results.get("small", []):
        if r.case.model == "crunet_small":
            label = f"crunet_small / preresnext_small train step b{r.case.batch} 1x28x28, {r.case.layout}"
            out.append((label, r.ratio, 1.0))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", nargs="*", default=None, help="inference, training, small")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    start = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_before = os.getloadavg()
    results, metas = {}, {}
    for name, cfg in configs(args.repeats).items():
        if args.only and name not in args.only:
            continue
        rows, meta = run_bench(cfg, log=lambda msg: print(msg, file=sys.stderr, flush=True))
        results[name], metas[name] = rows, meta
        print(f"\n### {name}\n\n{format_table(rows, meta, markdown=True)}\n", flush=True)
    load_after = os.getloadavg()
    print(f"\nmachine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; started {start}; load average (1, 5, 15 min) before "
          f"{load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, after "
          f"{load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    if results:
        print("\n| target | measured | goal | met |\n|---|---:|---:|---|")
        for what, ratio, goal in targets(results):
            print(f"| {what} | {ratio:.2f}x | {goal:.1f}x | {'yes' if ratio >= goal else 'no'} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: {"meta": metas[k], "rows": [r.as_dict() for r in v]} for k, v in results.items()}, f,
                      indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
