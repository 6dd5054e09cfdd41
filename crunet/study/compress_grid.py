"""The compress benchmark, ``crunet study run compress``: given a trained ResNet-32 (the teacher), is sharing (DSFB
S16U1) a better way to shrink it than thinning (ResNet-32 at the same parameters)?

Arms, all at tier 3's recipe less its bf16 (shifts plus flips, float32: on a CPU without AVX-512, bf16 autocast is
ten times slower than float32, docs/compress.md), DSFB with the source's CIFAR-10 regularizer:

- (a) DSFB S16U1 from scratch without a teacher, E epochs (tier 3's cell, here in float32);
- (b) the teacher converted into DSFB S16U1 (``init=svd``, the plain collective SVD; ``init=data``, the data-aware
  bases), then K epochs, K in ``FINE_TUNE_EPOCHS``;
- (c) DSFB S16U1 from scratch, E epochs;
- (d) ResNet-32 thinned to DSFB S16U1's parameters (``size=THIN_SIZE``), from scratch, E epochs;
- (e) that thin ResNet initialized from the teacher by its filters of largest norm (``init=norm``), then K epochs.

Every arm but (a) is distilled from the teacher (``kd=1``). The runs are ordered
cheapest first (K = 2, then K = 5, then E), seed-major within each length, so a grid stopped part-way leaves the
cheap comparison complete. Fine-tuning runs at ``FINE_TUNE_LR`` (sharing and thinning alike); from-scratch runs at
their family's tier-3 rate.

The study options this grid adds: ``kd=1`` (distil from ``TEACHER``), ``init=svd|data|norm`` (start from
``TEACHER`` converted; ``crunet.train.init_from``).
"""

from __future__ import annotations

from pathlib import Path

from crunet.errors import ConfigError
from crunet.study.grid import FM, TIER3_EPOCHS, RunSpec, _grid
from crunet.train.config import TrainConfig

TEACHER = "runs/compress/teacher-resnet32_cifar/last.pt"  # resnet32_cifar, 20 epochs, shifts + flips, float32
SHARED, PLAIN = "dsfb_resnet32_s16u1", "resnet32_cifar"
THIN_SIZE = "0.425"  # ResNet-32 at widths (10, 21, 42): 199,433 parameters against DSFB S16U1's 196,970
FINE_TUNE_EPOCHS = (2, 5)
FINE_TUNE_LR = "0.05"  # crunet compress's default: a converted network fine-tunes, it does not restart
SHARED_LR = "0.8"  # tier 3's rate for DSFB S16U1 (the learning-rate check); ResNet-32 keeps the default 0.2
SEEDS = range(3)
INIT_METHODS = ("svd", "data", "norm")


def recipe_option(epochs: int, extra: str) -> str:
    """Tier 3's recipe in float32: ``epochs`` epochs, random 2-pixel shifts plus flips, then the arm's changes."""
    return f"epochs={epochs},pad=2,amp=none,{extra}"


def arm_options(epochs: int) -> dict[str, list[tuple[str, str]]]:
    """(model, option) of every arm at one training length."""
    if epochs in FINE_TUNE_EPOCHS:
        tune = f"lr={FINE_TUNE_LR},kd=1"
        return {"b_svd": [(SHARED, recipe_option(epochs, f"orth_unique=1,{tune},init=svd"))],
                "b_data": [(SHARED, recipe_option(epochs, f"orth_unique=1,{tune},init=data"))],
                "e": [(PLAIN, recipe_option(epochs, f"size={THIN_SIZE},{tune},init=norm"))]}
    return {"a": [(SHARED, recipe_option(epochs, f"orth_unique=1,lr={SHARED_LR}"))],
            "c": [(SHARED, recipe_option(epochs, f"orth_unique=1,lr={SHARED_LR},kd=1"))],
            "d": [(PLAIN, recipe_option(epochs, f"size={THIN_SIZE},kd=1"))]}


def compress(results: Path | None = None, models: set[str] | None = None) -> list[RunSpec]:
    """The benchmark's runs, cheapest first, seed-major within each training length."""
    runs: list[RunSpec] = []
    for epochs in (*FINE_TUNE_EPOCHS, TIER3_EPOCHS):
        cells = [cell for arm in arm_options(epochs).values() for cell in arm]
        length = [r for model, option in cells for r in _grid(FM, (model,), SEEDS, (option,))]
        runs += sorted(length, key=lambda run: run.seed)
    return [r for r in runs if models is None or r.model in models]


def apply_option(cfg: TrainConfig, name: str, value: str) -> None:
    """The grid's own study options: ``kd=1`` (distil from the teacher), ``init=METHOD`` (start from it converted)."""
    if name == "kd" and value != "1" or name == "init" and value not in INIT_METHODS:
        raise ConfigError(f"study option {name}={value}: expected kd=1 or init=one of {', '.join(INIT_METHODS)}")
    if name == "kd":
        cfg.teacher = TEACHER  # a run without it is refused by the trainer, naming the file (docs/compress.md)
    else:
        cfg.init_from, cfg.init_method = TEACHER, value
