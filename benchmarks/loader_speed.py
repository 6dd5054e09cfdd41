"""Images/s of `crunet train`'s own folder loader on an ImageNet-layout folder of synthetic JPEGs.

Writes ``ROOT/train/<class>/*.JPEG`` (default 5,000 images of 500x375, ImageNet's typical size, in 10 class folders:
smooth colour fields with texture, about ImageNet's bytes per image), then opens it exactly as `crunet train` does
(``crunet.data.sources.open_split(ROOT, "train", DataSpec(...))``: PIL decode + RandomResizedCrop 224 + flip +
normalize in DataLoader workers, ``skip_bad_collate``, pinned memory when ``--pin``) and reads one epoch of shuffled
batches per repeat, for each worker count. The rate is images over the wall time of the epoch, worker start-up
included (as a training epoch pays it); the median of ``--repeats`` is reported with the extremes.

With ``--decode-device DEVICE`` (needs torchvision) it also times `crunet train --decode device`'s loader on DEVICE
the same way: workers read the files' bytes and draw the crops, DEVICE decodes each batch
(``torchvision.io.decode_jpeg``) and crops, flips and normalizes it (for each of ``--decode-workers``; one batch
before the timing sets up the device's decoder, which a training run has done before its first epoch).

Optionally (``--gpu-decode``, needs torchvision and CUDA) it times ``torchvision.io.decode_jpeg(device="cuda")`` on
batches of the same files' bytes (read from the page cache), decode alone and decode + a 224x224 resize on the GPU:
the decoder's own rate, without the loader around it.

    PYTHONPATH=. python3 benchmarks/loader_speed.py --workers 8 16 --decode-device cuda --json loader.json
    .venv/bin/python benchmarks/loader_speed.py --count 300 --workers 2 --repeats 2   # a CPU dry run
    .venv-timm/bin/python benchmarks/loader_speed.py --count 300 --workers 2 --repeats 2 --decode-device cpu
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _make_one(job: tuple[str, int, int, int, int]) -> int:
    from PIL import Image

    path, seed, width, height, quality = job
    rng = np.random.default_rng(seed)
    # a smooth colour field (a coarse random grid, upsampled) plus fine texture: JPEG sizes near ImageNet's
    coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((width, height),
                                                                                      Image.BICUBIC)
    pixels = np.asarray(coarse, dtype=np.int16) + rng.integers(-24, 25, (height, width, 3), dtype=np.int16)
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=quality)
    Path(path).write_bytes(buf.getvalue())
    return len(buf.getvalue())


def make_folder(root: Path, count: int, classes: int, width: int, height: int, quality: int = 90,
                procs: int | None = None) -> dict:
    """``root/train/class_k/img_i.JPEG``; kept if it already holds ``count`` images (the same folder is reused)."""
    train = root / "train"
    have = sorted(train.glob("*/*.JPEG")) if train.is_dir() else []
    if len(have) == count:
        return {"made": 0, "reused": count, "bytes": sum(p.stat().st_size for p in have), "seconds": 0.0}
    jobs = []
    for k in range(classes):
        (train / f"class_{k:03d}").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        jobs.append((str(train / f"class_{i % classes:03d}" / f"img_{i:06d}.JPEG"), i, width, height, quality))
    start = time.perf_counter()
    with ProcessPoolExecutor(procs or os.cpu_count()) as pool:
        sizes = list(pool.map(_make_one, jobs, chunksize=32))
    return {"made": count, "reused": 0, "bytes": sum(sizes), "seconds": time.perf_counter() - start}


def open_like_train(root: Path, size: int, workers: int, pin: bool, decode: str = "cpu", device: str = "cpu"):
    """The train split as `crunet train` opens a folder data set (RandomResizedCrop + flip, ``workers`` workers),
    with ``--decode cpu`` (pinned batches with ``pin``) or ``--decode device`` on ``device``."""
    from crunet.data.sources import DataSpec, open_split

    spec = DataSpec(in_chans=3, size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD, augment="rrc", workers=workers,
                    decode=decode)
    loader = open_split(root, "train", spec)
    if pin or decode == "device":
        loader.to(device if decode == "device" else "cuda")
    return loader


def time_epoch(loader, batch: int, epoch: int, sync=lambda: None) -> tuple[float, int, float]:
    """Seconds for one shuffled epoch, images delivered, seconds to the first batch; ``sync`` waits for the device."""
    order = np.random.default_rng(epoch).permutation(len(loader))
    batches = [order[i:i + batch].tolist() for i in range(0, len(order), batch)]
    n, first = 0, None
    start = time.perf_counter()
    for images, labels, *_ in loader.iterate(batches, epoch=epoch, train=True):
        n += len(labels)
        if first is None:
            sync()
            first = time.perf_counter() - start
        assert images.shape[1:] == (3, loader_size(loader), loader_size(loader))
    sync()
    return time.perf_counter() - start, n, first or 0.0


def loader_size(loader) -> int:
    return loader.dataset.transform.size


def bench_loader(root: Path, workers: list[int], batch: int, size: int, repeats: int, pin: bool,
                 log=print) -> list[dict]:
    return [{"path": "crunet-folder-loader", "workers": w, "batch": batch, "size": size, "pin_memory": pin,
             **repeated_epochs(open_like_train(root, size, w, pin), batch, repeats, f"workers {w:2d}", log)}
            for w in workers]


def repeated_epochs(loader, batch: int, repeats: int, label: str, log, sync=lambda: None) -> dict:
    """``repeats`` timed epochs of ``loader``, each logged: the median images/s with its range, and the median
    seconds to the first batch."""
    rates, firsts = [], []
    for r in range(repeats):
        seconds, n, first = time_epoch(loader, batch, epoch=r, sync=sync)
        rates.append(n / seconds)
        firsts.append(first)
        log(f"{label} repeat {r}: {n} images in {seconds:.2f} s = {n / seconds:.0f} img/s "
            f"(first batch after {first:.2f} s)")
    return {"images": len(loader), "img_s": statistics.median(rates), "img_s_min": min(rates),
            "img_s_max": max(rates), "first_batch_s": statistics.median(firsts), "repeats": repeats}


def bench_device_decode(root: Path, device: str, workers: list[int], batch: int, size: int, repeats: int,
                        log=print) -> list[dict]:
    """`crunet train --decode device`'s loader: workers read bytes, ``device`` decodes, crops, flips, normalizes."""
    import torch

    from crunet.errors import CrunetError

    try:
        loader = open_like_train(root, size, 1, False, "device", device)
    except CrunetError as err:  # no torchvision here
        log(f"device decode: skipped ({err})")
        return [{"path": "crunet-device-decode", "device": device, "skipped": str(err)}]
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else lambda: None
    warm = list(loader.iterate([list(range(min(batch, len(loader))))], epoch=999))  # the decoder's set-up
    sync()
    del warm
    return [{"path": "crunet-device-decode", "device": device, "workers": w, "batch": batch, "size": size,
             **repeated_epochs(open_like_train(root, size, w, False, "device", device), batch, repeats,
                               f"device decode on {device}, workers {w:2d}", log, sync)}
            for w in workers]


def bench_gpu_decode(root: Path, batch: int, size: int, repeats: int, log=print) -> list[dict]:
    """torchvision.io.decode_jpeg(device="cuda") on batches of file bytes: decode only, and decode + resize."""
    try:
        import torch
        import torch.nn.functional as F
        import torchvision
        from torchvision.io import decode_jpeg
    except ImportError as err:
        log(f"gpu decode: skipped ({err})")
        return [{"path": "gpu-decode", "skipped": f"torchvision not importable: {err}"}]
    if not torch.cuda.is_available():
        log("gpu decode: skipped (no CUDA)")
        return [{"path": "gpu-decode", "skipped": "CUDA is not available"}]
    files = sorted((root / "train").glob("*/*.JPEG"))
    datas = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in files]
    chunks = [datas[i:i + batch] for i in range(0, len(datas), batch)]

    def decode_only(chunk):
        return decode_jpeg(chunk, device="cuda")

    def decode_resize(chunk):
        imgs = decode_jpeg(chunk, device="cuda")
        return torch.cat([F.interpolate(im.unsqueeze(0).float(), size=(size, size), mode="bilinear",
                                        antialias=True) for im in imgs])

    rows = []
    for label, fn in (("decode", decode_only), ("decode+resize", decode_resize)):
        fn(chunks[0])  # warm-up: nvjpeg handles, kernels
        torch.cuda.synchronize()
        rates = []
        for r in range(repeats):
            start = time.perf_counter()
            for chunk in chunks:
                fn(chunk)
            torch.cuda.synchronize()
            rates.append(len(datas) / (time.perf_counter() - start))
            log(f"gpu {label} repeat {r}: {rates[-1]:.0f} img/s")
        rows.append({"path": f"gpu-{label}", "batch": batch, "size": size, "images": len(datas),
                     "img_s": statistics.median(rates), "img_s_min": min(rates), "img_s_max": max(rates),
                     "repeats": repeats, "torchvision": torchvision.__version__,
                     "note": "file bytes already in memory; no crop/flip/normalize; one process"})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=None, help="folder for the images (default: a temporary one, removed after)")
    p.add_argument("--count", type=int, default=5000)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--width", type=int, default=500)
    p.add_argument("--height", type=int, default=375)
    p.add_argument("--workers", type=int, nargs="+", default=[8, 16])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--pin", action="store_true", help="pinned-memory batches, as `crunet train` on CUDA")
    p.add_argument("--decode-device", default=None, metavar="DEVICE",
                   help="also time crunet train --decode device on DEVICE (cuda, cpu; needs torchvision)")
    p.add_argument("--decode-workers", type=int, nargs="+", default=None,
                   help="worker counts for --decode-device (default: --workers)")
    p.add_argument("--gpu-decode", action="store_true", help="also time torchvision's nvjpeg decode on CUDA")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    tmp = None
    if args.root is None:
        tmp = tempfile.TemporaryDirectory(prefix="crunet-loader-")
        root = Path(tmp.name)
    else:
        root = Path(args.root)
    try:
        made = make_folder(root, args.count, args.classes, args.width, args.height)
        log(f"{args.count} JPEGs of {args.width}x{args.height} in {root}: {made['bytes'] / args.count / 1024:.0f} "
            f"KiB each, made in {made['seconds']:.1f} s")
        rows = bench_loader(root, args.workers, args.batch, args.size, args.repeats, args.pin, log)
        if args.decode_device:
            rows += bench_device_decode(root, args.decode_device, args.decode_workers or args.workers, args.batch,
                                        args.size, args.repeats, log)
        if args.gpu_decode:
            rows += bench_gpu_decode(root, args.batch, args.size, args.repeats, log)
    finally:
        if tmp is not None:
            tmp.cleanup()
    import torch

    meta = {"count": args.count, "image": f"{args.width}x{args.height}", "classes": args.classes,
            "kib_per_image": made["bytes"] / args.count / 1024, "make_seconds": made["seconds"],
            "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
            "torch": torch.__version__, "python": platform.python_version(),
            "transform": f"crunet train folder loader: PIL decode, RandomResizedCropFlip {args.size}, normalize "
                         f"(crunet-device-decode: decode_jpeg on the device, the same crops, resize, flip, normalize "
                         f"there)"}
    for r in rows:
        name = f"{r['path']} {r['device']}" if "device" in r else r["path"]
        if "img_s" in r:
            print(f"{name:27s} workers {r.get('workers', '-')!s:>3}  {r['img_s']:8.0f} img/s "
                  f"({r['img_s_min']:.0f}-{r['img_s_max']:.0f})")
        else:
            print(f"{name:27s} skipped: {r['skipped']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
