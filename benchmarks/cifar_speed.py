"""Is the CIFAR path a bottleneck? resnet32_cifar trained on N CIFAR-format images against the same model on the same
pixels as IDX files at 32x32, in one process, arms alternating in each repeat.

Writes (once, under --root, default a temporary folder) N random 32x32 images as ``cifar-10-python.tar.gz`` (the
python batches as Python 2 pickled them, read member by member from the archive) and the same images' first channel
as the four IDX files, then per repeat and arm:
- load: ``open_split(data, "train", spec)`` as ``crunet train`` calls it (archive read and unpickled / IDX read), s;
- data: the loader alone over --steps batches (the source's augmentation: 4-pixel padded random crop + flip,
  normalization), img/s;
- train: --steps SGD steps of the model on those batches (forward, backward, update; channels_last), img/s.
The two arms differ only in the data path and in the model's first convolution (3 input channels against 1:
0.6 % of resnet32_cifar's multiply-adds). Reported: median and extremes over the repeats, and the CIFAR/IDX ratio
of each repeat. On the CPU the clock is this process's CPU time (``--clock cpu``, the default there): on a machine
shared with other jobs it counts the work done, not the waiting; ``--clock wall`` for an idle machine.
``--device cuda`` keeps the images on the GPU as training does and adds the time one 300-epoch table row would take
at the measured rate.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/cifar_speed.py --count 50000 --steps 20 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from crunet import create_model
from crunet.data.cifar_write import CifarArrays, cifar_files, write_cifar
from crunet.data.mnist_pickle import write_idx
from crunet.data.sources import model_spec, open_split


def make_data(root: Path, count: int) -> dict[str, Path]:
    """{"cifar": the archive, "idx": the IDX folder}, written unless already there."""
    archive, idx = root / "cifar-10-python.tar.gz", root / "idx"
    if not archive.is_file() or not (idx / "t10k-labels-idx1-ubyte.gz").is_file():
        rng = np.random.default_rng(0)
        splits = []
        for n in (count, 1000):
            grey = rng.integers(0, 256, (n, 1, 32, 32), dtype=np.uint8)
            splits.append(CifarArrays(np.repeat(grey, 3, axis=1), rng.integers(0, 10, n)))
        write_cifar(root, "cifar10", False, cifar_files("cifar10", False, splits[0], splits[1],
                                                        [f"class_{k}" for k in range(10)]), archive=True)
        idx.mkdir(parents=True, exist_ok=True)
        for prefix, split in zip(("train", "t10k"), splits, strict=True):
            write_idx(idx / f"{prefix}-images-idx3-ubyte.gz", split.images[:, 0])
            write_idx(idx / f"{prefix}-labels-idx1-ubyte.gz", split.labels.astype(np.uint8))
    return {"cifar": archive, "idx": idx}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def clock(args) -> float:
    return time.process_time() if args.clock == "cpu" else time.perf_counter()


def run_arm(data: Path, in_chans: int, args, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=10, in_chans=in_chans)
    spec = model_spec(model.pretrained_cfg, in_chans, 32, augment="light", pad=4, workers=0)
    start = clock(args)
    loader = open_split(data, "train", spec).to(device)
    load_s = clock(args) - start
    order = torch.randperm(len(loader), generator=torch.Generator().manual_seed(0))
    batches = list(order[: (args.steps + 2) * args.batch_size].split(args.batch_size))
    for i, _ in enumerate(loader.iterate(batches, epoch=0)):
        if i == 1:  # one warm-up batch
            sync(device)
            start = clock(args)
    sync(device)
    data_rate = (args.steps + 1) * args.batch_size / (clock(args) - start)
    model = model.to(device, memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for i, (x, y, _) in enumerate(loader.iterate(batches, epoch=1)):
        if i == 2:  # two warm-up steps (allocator, cuDNN's choice of kernels), then the clock
            sync(device)
            start = clock(args)
        loss = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return {"load_s": load_s, "data_img_s": data_rate,
            "train_img_s": args.steps * args.batch_size / (clock(args) - start)}


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.4g} ({min(values):.4g} to {max(values):.4g})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=50000, help="training images (CIFAR-10 has 50,000)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per arm and repeat")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--model", default="resnet32_cifar")
    p.add_argument("--device", default="cpu")
    p.add_argument("--root", default=None, help="where the data sets are written (reused if there)")
    p.add_argument("--clock", choices=("cpu", "wall"), default=None, help="default: cpu on the CPU, wall on a GPU")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    device = torch.device(args.device)
    args.clock = args.clock or ("cpu" if device.type == "cpu" else "wall")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root or tmp)
        data = make_data(root, args.count)
        runs = {"cifar": [], "idx": []}
        for repeat in range(args.repeats):
            for arm in (("cifar", "idx") if repeat % 2 == 0 else ("idx", "cifar")):
                runs[arm].append(run_arm(data[arm], 3 if arm == "cifar" else 1, args, device))
                print(f"repeat {repeat + 1} {arm}: " + ", ".join(f"{k} {v:.4g}" for k, v in runs[arm][-1].items()),
                      flush=True)
    ratios = [c["train_img_s"] / i["train_img_s"] for c, i in zip(runs["cifar"], runs["idx"], strict=True)]
    print(f"\n{args.model}, batch {args.batch_size}, {args.steps} steps x {args.repeats} repeats, {args.count:,} "
          f"images, {device}, {torch.get_num_threads()} threads, {args.clock} clock\n")
    print("| arm | load (s) | data path alone (img/s) | training (img/s) |")
    print("|---|---:|---:|---:|")
    for arm, name in (("cifar", "CIFAR python .tar.gz"), ("idx", "IDX, same pixels")):
        print(f"| {name} | " + " | ".join(summary([r[k] for r in runs[arm]])
                                          for k in ("load_s", "data_img_s", "train_img_s")) + " |")
    print(f"\ntraining CIFAR / IDX, per repeat: median {statistics.median(ratios):.3f} "
          f"({min(ratios):.3f} to {max(ratios):.3f})")
    if device.type == "cuda":
        rate = statistics.median(r["train_img_s"] for r in runs["cifar"])
        print(f"one table row at the full recipe (300 epochs of {args.count:,} images): "
              f"{300 * args.count / rate / 3600:.2f} h at {rate:.0f} img/s")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": runs, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
