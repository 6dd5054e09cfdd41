"""Timing statistics, the process's resident memory, and the machine's dense-convolution rate (the roofline)."""

from __future__ import annotations

import os
import resource
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from crunet.errors import ConfigError

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class Stats:
    """Seconds per run: median, extremes and quartiles of the timed runs."""

    median: float
    min: float
    max: float
    q1: float
    q3: float
    n: int

    @classmethod
    def of(cls, times: list[float]) -> Stats:
        if not times:
            raise ValueError("no timed runs")
        q = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else [times[0]] * 3
        return cls(statistics.median(times), min(times), max(times), q[0], q[2], len(times))


def resolve_device(name: str | torch.device) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` as a device; a ValueError in one line for anything else, or for CUDA where
    this Python has none."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device {name!r}: not a torch device ({str(err).splitlines()[0]})") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ConfigError(f"device {name!r}: the benchmark runs on cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: CUDA is not available (torch {torch.__version__}, "
                         f"built for CUDA {torch.version.cuda}); use --device cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)


def device_info(device: torch.device) -> dict:
    """The run's device for the JSON metadata: name, and on CUDA the GPU's name, memory and the CUDA/cuDNN versions."""
    info: dict = {"device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(device_name=props.name, device_memory_gib=props.total_memory / 2**30, cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), capability=".".join(map(str, (props.major, props.minor))),
                    tf32_matmul=torch.backends.cuda.matmul.allow_tf32, tf32_cudnn=torch.backends.cudnn.allow_tf32)
    else:
        import platform

        info["device_name"] = platform.processor() or platform.machine()
    return info


def time_once(fn: Callable[[], object], device: torch.device | None = None) -> float:
    """Seconds for one call; on CUDA, from a synchronized start to the end of the work it queued."""
    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def rss_bytes() -> int:
    """The process's resident set now (Linux /proc), else its high-water mark (getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return max_rss_bytes()


def max_rss_bytes() -> int:
    """The process's resident-set high-water mark since it started (``getrusage``; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class RssSampler:
    """Samples the resident set every ``interval`` s in a thread; ``peak`` is the largest seen since ``reset``.
    tracemalloc cannot see torch's allocations; the resident set sees them all (and everything else resident)."""

    def __init__(self, interval: float = 0.005):
        self.interval, self.peak = interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def reset(self) -> None:
        self.peak = rss_bytes()

    def __enter__(self) -> RssSampler:
        self.reset()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@torch.inference_mode()
def dense_conv_rate(dtype: torch.dtype = torch.float32, repeats: int = 5, batch: int = 8, chs: int = 128,
                    size: int = 56, device: torch.device | None = None) -> float:
    """GMAC/s of a dense 3x3 convolution (``chs`` -> ``chs`` at ``size`` x ``size``), the best of the two layouts:
    the machine's practical compute roof for convolutions. On CUDA the batch is 8x larger (a GPU needs the work)."""
    device = device or torch.device("cpu")
    if device.type == "cuda":
        batch *= 8
    x = torch.randn(batch, chs, size, size, dtype=dtype, device=device)
    w = torch.randn(chs, chs, 3, 3, dtype=dtype, device=device)
    macs = batch * chs * chs * 9 * size * size
    best = 0.0
    for fmt in (torch.contiguous_format, torch.channels_last):
        xf, wf = x.contiguous(memory_format=fmt), w.contiguous(memory_format=fmt)
        for _ in range(2 if device.type == "cuda" else 1):  # cuDNN picks its algorithm on the first call
            time_once(lambda xf=xf, wf=wf: F.conv2d(xf, wf, padding=1), device)
        t = statistics.median(time_once(lambda xf=xf, wf=wf: F.conv2d(xf, wf, padding=1), device)
                              for _ in range(repeats))
        best = max(best, macs / t / 1e9)
    return best
