"""Is it faster to run two single-threaded trainings side by side than one two-threaded training after another?

For each model: training steps (batch 128, 1x28x28, 10 classes, channels_last, the study's recipe) timed for
(a) one process with 2 threads and (b) two processes with 1 thread each, started together. Throughput is images per
second summed over the processes; the rounds alternate (a) and (b) so both see the same machine. Prints a markdown
table: median and spread of the rounds, and the ratio b / a of the medians.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/study_parallel.py --rounds 5 --steps 30
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

MODELS = ("preresnet_small", "preresnext_small", "crunet_small", "resnet32_cifar", "dsfb_resnet32_s16u1")

WORKER = """
import json, sys, time, torch
import torch.nn.functional as F
from crunet.models import create_model
model_name, threads, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
torch.manual_seed(0)
model = create_model(model_name, num_classes=10, in_chans=1).to(memory_format=torch.channels_last)
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
x = torch.randn(128, 1, 28, 28).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 10, (128,))
def step():
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()
for _ in range(3):
    step()
start = time.perf_counter()
for _ in range(steps):
    step()
print(json.dumps({"images_per_s": 128 * steps / (time.perf_counter() - start)}))
"""


def _run(model: str, processes: int, threads: int, steps: int) -> float:
    """Images per second summed over ``processes`` started together."""
    env_cmd = [sys.executable, "-c", WORKER, model, str(threads), str(steps)]
    procs = [subprocess.Popen(env_cmd, stdout=subprocess.PIPE, text=True,
                              env={"OMP_NUM_THREADS": str(threads), "PATH": "/usr/bin:/bin"})
             for _ in range(processes)]
    return sum(json.loads(p.communicate()[0])["images_per_s"] for p in procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = parser.parse_args()
    print(f"| model | 1 process x 2 threads, img/s | 2 processes x 1 thread, img/s | ratio | rounds |  "
          f"({time.strftime('%Y-%m-%d %H:%M')})")
    print("|---|---:|---:|---:|---:|")
    for model in args.models:
        one, two = [], []
        for _ in range(args.rounds):
            one.append(_run(model, 1, 2, args.steps))
            two.append(_run(model, 2, 1, args.steps))
        print(f"| `{model}` | {_cell(one)} | {_cell(two)} | {statistics.median(two) / statistics.median(one):.2f} | "
              f"{args.rounds} |", flush=True)


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"


if __name__ == "__main__":
    main()
