"""Where the inference time goes, stage by stage: the thread CPU time of each stage of timm's ResNeXt-50 (when timm is
importable) and of our deployed crunet56 and preresnext50_32x4d, channels_last, batch 8, 224x224.

Thread CPU time with one thread is less sensitive to other processes than wall time: use it to compare stages.
    .venv-timm/bin/python benchmarks/stage_times.py [--threads 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch

import crunet
from crunet.bench.peers import timm_available
from crunet.deploy import deploy


def stage_times(parts: list, x: torch.Tensor, repeats: int) -> list[float]:
    """The best of ``repeats`` (after one warm-up) thread CPU milliseconds of each part, run in sequence."""
    best = [float("inf")] * len(parts)
    for _ in range(repeats + 1):
        h = x
        for i, part in enumerate(parts):
            start = time.thread_time()
            h = part(h)
            best[i] = min(best[i], (time.thread_time() - start) * 1e3)
    return best


def deployed_parts(name: str) -> list:
    net = deploy(crunet.create_model(name), layout="channels_last").net
    return [net.stem, *net.stages, lambda h: net.forward_head(net.final_norm(h))]


def timm_parts(name: str) -> list:
    import timm

    m = timm.create_model(name).eval().to(memory_format=torch.channels_last)
    return [lambda h: m.maxpool(m.act1(m.bn1(m.conv1(h)))), m.layer1, m.layer2, m.layer3, m.layer4, m.forward_head]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.randn(8, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    models = {"crunet56 deploy": lambda: deployed_parts("crunet56"),
              "preresnext50_32x4d deploy": lambda: deployed_parts("preresnext50_32x4d")}
    if timm_available():
        models = {"timm resnext50_32x4d eager": lambda: timm_parts("resnext50_32x4d"), **models}
    print("| model | stem | stage 1 | stage 2 | stage 3 | stage 4 | head | total ms |")
    print("|---|" + "---:|" * 7)
    with torch.inference_mode():
        for name, build in models.items():
            ms = stage_times(build(), x, args.repeats)
            print(f"| {name} | " + " | ".join(f"{t:.0f}" for t in ms) + f" | {sum(ms):.0f} |", flush=True)


if __name__ == "__main__":
    main()
