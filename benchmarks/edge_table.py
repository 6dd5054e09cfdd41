"""The table an edge user wants: per model, parameters, the float32 and int8 ONNX files (small graph:
each shared tensor once), top-1 of the checkpoint and of both files on the full test set, and onnxruntime's latency
at batch 1 and throughput at batch 32 with 1 and 2 threads, float32 and int8 timed in the same process.

Small models (``--part small``): the checkpoints ``RUNS/M/best.pt`` of ``crunet train --model M --epochs 5`` on
Fashion-MNIST, once the run has finished (``summary.json``); a model without one is reported with random weights
(sizes and speed only). Each file is written and
evaluated by the command line itself (``crunet export``, ``crunet eval``), as a user would. Large models
(``--part large``, 224x224, random weights, int8 calibrated on random images): sizes and speed only.

Timing: per repeat, each (file, threads) session runs ``--iters`` batches of 1 (latency: the median of those) and
``--iters32`` batches of 32 (throughput), sessions interleaved; reported: median and the spread (min-max) over the
repeats. ONNX Runtime's own thread pool (intra-op threads = 1 or 2), sequential execution.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/edge_table.py --part small --repeats 5
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/edge_table.py --part large --repeats 3
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SMALL = ("crunet_small", "preresnext_small", "dsfb_resnet32_s16u1", "resnet32_cifar")
LARGE = ("crunet56", "preresnext50_32x4d", "dsfb_resnet50_shared", "resnet50", "dsfb_mobilenetv2_shared",
         "mobilenetv2")


def crunet(*args: str) -> str:
    """``crunet ARGS`` in a fresh process (as a user runs it); its stdout."""
    done = subprocess.run([sys.executable, "-m", "crunet", *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"crunet {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def top1(path: Path, out: Path) -> float:
    crunet("eval", str(path), "--workers", "0", "--out", str(out))
    return json.loads(out.read_text())["top1"]


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def time_sessions(files: dict[str, Path], shape: tuple[int, ...], threads: tuple[int, ...], repeats: int,
                  iters: int, iters32: int) -> dict:
    """{(precision, threads): {"b1_ms": [...], "b32_img_s": [...]}} over repeats, every session in each repeat."""
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, *shape), dtype=np.float32)
    x32 = rng.standard_normal((32, *shape), dtype=np.float32)
    sessions = {(p, t): session(f, t) for p, f in files.items() for t in threads}
    for s in sessions.values():  # warm-up
        s.run(None, {"x": x1})
        s.run(None, {"x": x32})
    times = {k: {"b1_ms": [], "b32_img_s": []} for k in sessions}
    for _ in range(repeats):
        for key, s in sessions.items():
            one = []
            for _ in range(iters):
                start = time.perf_counter()
                s.run(None, {"x": x1})
                one.append(time.perf_counter() - start)
            start = time.perf_counter()
            for _ in range(iters32):
                s.run(None, {"x": x32})
            times[key]["b1_ms"].append(1000 * statistics.median(one))
            times[key]["b32_img_s"].append(32 * iters32 / (time.perf_counter() - start))
    return times


def summary(values: list[float]) -> str:
    """Median (min-max), to 3 significant digits of the median."""
    mid = statistics.median(values)
    digits = max(0, 2 - int(np.floor(np.log10(abs(mid))))) if mid else 1
    return f"{mid:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def small_row(name: str, runs: Path, tmp: Path, args) -> dict:
    from crunet import count_parameters, create_model
    from crunet.interop.export import export_onnx
    from crunet.interop.quantize import quantize_int8

    fp32, int8 = tmp / f"{name}.onnx", tmp / f"{name}-int8.onnx"
    finished = (runs / name / "summary.json").is_file()  # a run still training is not the recipe's model
    ckpt = next((runs / name / f for f in ("best.pt", "last.pt") if (runs / name / f).is_file()), None) if finished \
        else None
    row = {"model": name, "trained": bool(ckpt)}
    if ckpt:
        from crunet.interop.weights import read_weights

        row["params"] = count_parameters(read_weights(ckpt).build())
        crunet("export", "--checkpoint", str(ckpt), "--format", "onnx", "--out", str(fp32))
        crunet("export", "--checkpoint", str(ckpt), "--format", "onnx", "--out", str(int8), "--int8",
               "--calibration-images", str(args.calibration_images))
        row["top1_ckpt"] = json.loads(crunet("eval", str(ckpt), "--workers", "0", "--out",
                                             str(tmp / f"{name}-ckpt.json")))["top1"]
        row["top1_fp32"] = top1(fp32, tmp / f"{name}-fp32.json")
        row["top1_int8"] = top1(int8, tmp / f"{name}-int8.json")
    else:  # random weights, 28x28 grey as the trained ones would be; int8 calibrated on random images
        model = create_model(name, num_classes=10, in_chans=1).eval()
        row["params"] = count_parameters(model)
        export_onnx(model, fp32, (28, 28))
        quantize_int8(fp32, int8, iter([torch.randn(32, 1, 28, 28) for _ in range(4)]))
    row.update(fp32_bytes=fp32.stat().st_size, int8_bytes=int8.stat().st_size)
    row["times"] = time_sessions({"fp32": fp32, "int8": int8}, (1, 28, 28), tuple(args.threads), args.repeats,
                                 args.iters, args.iters32)
    return row


def large_row(name: str, tmp: Path, args) -> dict:
    from crunet import count_parameters, create_model
    from crunet.interop.export import export_onnx
    from crunet.interop.quantize import quantize_int8

    model = create_model(name).eval()
    fp32, int8 = tmp / f"{name}.onnx", tmp / f"{name}-int8.onnx"
    export_onnx(model, fp32, (224, 224))
    quantize_int8(fp32, int8, iter([torch.randn(4, 3, 224, 224) for _ in range(2)]))
    row = {"model": name, "trained": False, "params": count_parameters(model),
           "fp32_bytes": fp32.stat().st_size, "int8_bytes": int8.stat().st_size}
    row["times"] = time_sessions({"fp32": fp32, "int8": int8}, (3, 224, 224), tuple(args.threads), args.repeats,
                                 args.iters, args.iters32)
    return row


def table(rows: list[dict], threads: tuple[int, ...]) -> str:
    head = ("| model | params | fp32 file (x 4 B/param) | int8 file (x 1 B/param) | top-1 ckpt | top-1 fp32 | "
            "top-1 int8 |")
    lines = [head, "|" + "---|" * 7]
    for r in rows:
        acc = [f"{r[k]:.2f}" if k in r else "-" for k in ("top1_ckpt", "top1_fp32", "top1_int8")]
        fp32, int8, n = r["fp32_bytes"], r["int8_bytes"], r["params"]
        weights = "" if r["trained"] else " (random weights)"
        lines.append(f"| `{r['model']}`{weights} | {n:,} | {fp32:,} ({fp32 / 4 / n:.3f}) | {int8:,} ({int8 / n:.3f}) | "
                     + " | ".join(acc) + " |")
    lines += ["", "| model | threads | fp32 batch-1 ms | int8 batch-1 ms | int8/fp32 | fp32 batch-32 img/s | "
              "int8 batch-32 img/s | int8/fp32 |", "|" + "---|" * 8]
    for r in rows:
        for t in threads:
            f, q = r["times"][("fp32", t)], r["times"][("int8", t)]
            lat = statistics.median(q["b1_ms"]) / statistics.median(f["b1_ms"])
            thr = statistics.median(q["b32_img_s"]) / statistics.median(f["b32_img_s"])
            lines.append(f"| `{r['model']}` | {t} | {summary(f['b1_ms'])} | {summary(q['b1_ms'])} | {lat:.2f} | "
                         f"{summary(f['b32_img_s'])} | {summary(q['b32_img_s'])} | {thr:.2f} |")
    return "\n".join(lines)


def processor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("small", "large"), required=True)
    parser.add_argument("--runs", default="runs/edge", help="folder of the small models' training runs")
    parser.add_argument("--models", nargs="*", default=None, help="default: the part's models")
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20, help="batch-1 runs per repeat and session")
    parser.add_argument("--iters32", type=int, default=3, help="batch-32 runs per repeat and session")
    parser.add_argument("--calibration-images", type=int, default=256)
    parser.add_argument("--json", default=None, help="also write the rows here (default benchmarks/edge-PART.json)")
    parser.add_argument("--from-json", default=None, help="print the table of rows written before; measure nothing")
    args = parser.parse_args()
    if args.from_json:
        rows = json.loads(Path(args.from_json).read_text())
        for r in rows:
            r["times"] = {(k.split("/")[0], int(k.split("/")[1])): v for k, v in r["times"].items()}
        print(table(rows, tuple(args.threads)))
        return
    models = args.models or (SMALL if args.part == "small" else LARGE)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edge-") as tmp:
        for name in models:
            rows.append(small_row(name, Path(args.runs), Path(tmp), args) if args.part == "small"
                        else large_row(name, Path(tmp), args))
            print(f"{name}: done", file=sys.stderr, flush=True)
    import onnxruntime

    print(f"command: {' '.join(sys.argv)}\nprocessor: {processor()}, {torch.get_num_threads()} torch threads, "
          f"onnxruntime {onnxruntime.__version__}, torch {torch.__version__}\n")
    print(table(rows, tuple(args.threads)))
    out = Path(args.json or f"benchmarks/edge-{args.part}.json")
    for r in rows:
        r["times"] = {f"{p}/{t}": v for (p, t), v in r["times"].items()}
    out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
