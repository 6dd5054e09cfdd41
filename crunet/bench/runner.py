"""Run benchmark cases: images/s for inference or a full training step, in the same process as the peers.

Cases that are compared (same mode, batch, input size and dtype) are built together, warmed up, then timed in
interleaved rounds (one run of each case per round, the order rotated every round), so that a change of machine load
hits every case alike and the ratio of medians stays fair.

On CUDA (``device="cuda"`` or ``"cuda:N"``) every timed run is bracketed by ``torch.cuda.synchronize``, the warm-up runs
first (a compiled case compiles there, so compile time is never timed), and each row carries the peak GPU memory
of its runs (``torch.cuda.max_memory_allocated``, reset before each run).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn

from crunet.bench import peers
from crunet.bench.timing import (
    RssSampler,
    Stats,
    dense_conv_rate,
    device_info,
    max_rss_bytes,
    resolve_device,
    time_once,
)
from crunet.deploy import deploy
from crunet.errors import ConfigError

MODES = ("infer", "train")
DTYPES = {"float32": torch.float32, "bf16": torch.bfloat16}
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
VARIANTS = ("eager", "deploy", "deploy-shared", "compile", "deploy+compile")
TRAIN_MACS_FACTOR = 3  # a training step: forward + backward (about twice the forward's MACs)


@dataclass(frozen=True)
class Case:
    model: str
    mode: str
    batch: int
    size: int
    in_chans: int
    dtype: str
    layout: str
    variant: str

    @property
    def group(self) -> tuple:
        return self.mode, self.batch, self.size, self.in_chans, self.dtype


@dataclass
class BenchConfig:
    models: list[str]
    modes: tuple[str, ...] = ("infer",)
    batches: tuple[int, ...] = (8,)
    sizes: tuple[int, ...] = (224,)
    in_chans: int = 3
    num_classes: int = 1000
    dtypes: tuple[str, ...] = ("float32",)
    layouts: tuple[str, ...] = ("contiguous", "channels_last")
    variants: tuple[str, ...] = ("eager",)
    peers: list[str] | None = None  # None: ``peers.default_peers()``
    ref: str | None = None  # the ratio's reference: default the first peer
    warmup: int = 2
    repeats: int = 5
    threads: int | None = None
    memory: bool = True
    device: str = "cpu"  # cpu, cuda or cuda:N

    def __post_init__(self) -> None:
        for name, values, allowed in (("modes", self.modes, MODES), ("dtypes", self.dtypes, DTYPES),
                                      ("layouts", self.layouts, LAYOUTS), ("variants", self.variants, VARIANTS)):
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise ConfigError(f"{name} must be a non-empty choice of {', '.join(allowed)}, got {values!r}")
        if self.warmup < 0 or self.repeats < 1:
            raise ConfigError(f"need warmup >= 0 and repeats >= 1, got {self.warmup} and {self.repeats}")
        resolve_device(self.device)  # a bad device, or CUDA where there is none: one clear ValueError now

    def all_models(self) -> list[str]:
        chosen = peers.default_peers() if self.peers is None else self.peers
        return list(dict.fromkeys([*self.models, *chosen]))

    def reference(self) -> str | None:
        if self.ref:
            return self.ref
        chosen = peers.default_peers() if self.peers is None else self.peers
        return chosen[0] if chosen else None


@dataclass
class Row:
    """One case's measurement; ``as_dict`` flattens the case's fields in front of the numbers."""

    case: Case
    img_s: float
    img_s_min: float
    img_s_max: float
    img_s_q1: float
    img_s_q3: float
    ms_median: float
    runs: int
    gmacs_per_img: float
    gmac_s: float
    roofline: float
    peak_rss_mib: float
    ref: str = ""
    ratio: float | None = None
    ratio_best: float | None = None
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        numbers = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("case", "extra")}
        return {**asdict(self.case), **numbers, **self.extra}


def cases(cfg: BenchConfig) -> list[Case]:
    """Every combination; ``deploy`` variants only for our models' inference."""
    out = []
    for model, mode, batch, size, dtype, layout, variant in itertools.product(
            cfg.all_models(), cfg.modes, cfg.batches, cfg.sizes, cfg.dtypes, cfg.layouts, cfg.variants):
        if "deploy" in variant and (mode == "train" or model.startswith("timm:")):
            continue
        out.append(Case(model, mode, batch, size, cfg.in_chans, dtype, layout, variant))
    return out


def _autocast(dtype: str, device: torch.device) -> contextlib.AbstractContextManager:
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[dtype])


def make_step(case: Case, model: nn.Module, device: str | torch.device = "cpu") -> Callable[[], None]:
    """One benchmark run on ``device``: a forward pass under ``inference_mode``, or forward + backward + SGD step."""
    device = torch.device(device)
    fmt = LAYOUTS[case.layout]
    x = torch.randn(case.batch, case.in_chans, case.size, case.size, device=device).contiguous(memory_format=fmt)
    model.to(device)
    if case.mode == "infer":
        model.eval()
        if "deploy" in case.variant:  # deploy-shared: keep shared weights shared (BNs after them stay)
            model = deploy(model, layout=case.layout, unshare=case.variant != "deploy-shared")
        else:
            model.to(memory_format=fmt)
        run = torch.compile(model) if "compile" in case.variant else model

        def infer() -> None:
            with torch.inference_mode(), _autocast(case.dtype, device):
                run(x)
        return infer
    model.train().to(memory_format=fmt)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    run = torch.compile(model) if "compile" in case.variant else model
    num_classes = model.get_classifier().out_features
    y = torch.randint(0, num_classes, (case.batch,), device=device)

    def train() -> None:
        optimizer.zero_grad(set_to_none=True)
        with _autocast(case.dtype, device):
            loss = F.cross_entropy(run(x), y)
        loss.backward()
        optimizer.step()
    return train


def run_bench(cfg: BenchConfig, log: Callable[[str], None] | None = None) -> tuple[list[Row], dict]:
    """All cases of ``cfg`` as rows, and the run's metadata (device, machine rates, threads, versions)."""
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    log = log or (lambda msg: None)
    rates = {d: dense_conv_rate(DTYPES[d], device=device) for d in cfg.dtypes}
    log("dense 3x3 conv: " + ", ".join(f"{d} {r:.1f} GMAC/s" for d, r in rates.items()))
    rows: list[Row] = []
    all_cases = cases(cfg)
    for _, group in itertools.groupby(sorted(all_cases, key=lambda c: c.group), key=lambda c: c.group):
        rows += _run_group(list(group), cfg, rates, log, device)
    _add_ratios(rows, cfg.reference())
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "dense_conv_gmac_s": rates,
            "max_rss_mib": max_rss_bytes() / 2**20, "warmup": cfg.warmup, "repeats": cfg.repeats,
            "timm": peers.timm_version(), **device_info(device)}
    return rows, meta


def _run_group(group: list[Case], cfg: BenchConfig, rates: dict[str, float],
               log: Callable[[str], None], device: torch.device | None = None) -> list[Row]:
    device = device or torch.device("cpu")
    cuda = device.type == "cuda"
    steps, macs = {}, {}
    for case in group:
        torch.manual_seed(0)
        model = peers.build(case.model, cfg.num_classes, case.in_chans)
        macs[case] = peers.macs_per_image(model, case.model, (case.in_chans, case.size, case.size))
        steps[case] = make_step(case, model, device)
        warmup = max(cfg.warmup, 1) if "compile" in case.variant else cfg.warmup  # never time the compilation
        for _ in range(warmup):
            steps[case]()
        if cuda:
            torch.cuda.synchronize(device)
        log(f"ready: {_label(case)}")
    times: dict[Case, list[float]] = {case: [] for case in group}
    peaks = dict.fromkeys(group, 0)
    gpu_peaks = dict.fromkeys(group, 0)
    with _sampler(cfg.memory) as sampler:
        for r in range(cfg.repeats):
            for case in group[r % len(group):] + group[:r % len(group)]:  # rotated: no case always runs first
                sampler.reset()
                if cuda:
                    torch.cuda.reset_peak_memory_stats(device)
                times[case].append(time_once(steps[case], device))
                peaks[case] = max(peaks[case], sampler.peak, 0)
                if cuda:
                    gpu_peaks[case] = max(gpu_peaks[case], torch.cuda.max_memory_allocated(device))
    rows = [_row(case, Stats.of(times[case]), macs[case], rates[case.dtype], peaks[case]) for case in group]
    if cuda:
        for row in rows:
            row.extra["peak_gpu_mib"] = gpu_peaks[row.case] / 2**20
        steps.clear()
        torch.cuda.empty_cache()
    return rows


@contextlib.contextmanager
def _sampler(enabled: bool) -> Iterator[RssSampler]:
    sampler = RssSampler()
    if not enabled:
        yield sampler
        return
    with sampler:
        yield sampler


def _label(case: Case) -> str:
    return (f"{case.model} {case.mode} b{case.batch} {case.in_chans}x{case.size}x{case.size} {case.dtype} "
            f"{case.layout} {case.variant}")


def _row(case: Case, stats: Stats, macs: int, rate: float, peak: int) -> Row:
    img = case.batch
    factor = TRAIN_MACS_FACTOR if case.mode == "train" else 1
    gmac_s = macs * factor * img / stats.median / 1e9
    return Row(case, img_s=img / stats.median, img_s_min=img / stats.max, img_s_max=img / stats.min,
               img_s_q1=img / stats.q3, img_s_q3=img / stats.q1, ms_median=stats.median * 1e3, runs=stats.n,
               gmacs_per_img=macs / 1e9, gmac_s=gmac_s, roofline=gmac_s / rate, peak_rss_mib=peak / 2**20)


def _add_ratios(rows: list[Row], ref: str | None) -> None:
    """ratio: against the reference in the same layout and variant (its eager run for ``deploy``); ratio_best:
    against the reference's fastest layout (eager for eager/deploy rows, compiled for compiled rows)."""
    if not ref:
        return
    for row in rows:
        same = [r for r in rows if r.case.model == ref and r.case.group == row.case.group]
        compiled = "compile" in row.case.variant
        pool = [r for r in same if ("compile" in r.case.variant) == compiled and "deploy" not in r.case.variant]
        match = [r for r in pool if r.case.layout == row.case.layout]
        row.ref = ref
        if match:
            row.ratio = row.img_s / match[0].img_s
        if pool:
            row.ratio_best = row.img_s / max(r.img_s for r in pool)
