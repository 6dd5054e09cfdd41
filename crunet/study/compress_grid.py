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

The same five arms for CRU against ResNeXt on the small models (``a_cru`` ... ``e_cru``): the teacher a trained
``preresnext_small``; the shared design its CRU form at its own bottleneck widths (``bottlenecks=source``: what
``crunet factorize`` makes of it, 288,810 parameters; ``crunet_small`` is wider than the ResNeXt, so no compression),
converted by collective factorization (``init=cru``); the thin one ``preresnext_small`` at ``size=0.82`` (283,387),
each group keeping its channels of largest norm. They come after the DSFB arms.

Every arm but (a) is distilled from the teacher (``kd=1``). The runs are ordered
cheapest first (K = 2, then K = 5, then E), seed-major within each length, so a grid stopped part-way leaves the
cheap comparison complete. Fine-tuning runs at ``FINE_TUNE_LR`` (sharing and thinning alike); from-scratch runs at
their family's tier-3 rate.

The study options this grid adds: ``kd=1`` (distil from the teacher), ``init=svd|data|norm|cru`` (start from the
teacher converted; ``crunet.train.init_from``), ``bottlenecks=source`` (above) and ``batch=N`` (``SMALL_BATCH``).

Two scales, one design: ``compress`` trains on all 60,000 images (an estimated 45 core-hours on a 2-core AVX2 CPU, a
GPU's job); ``compress-small`` on the first ``SMALL_SUBSET`` of a fixed shuffle, validated on as many test images, the
teacher too (``subset=`` in every option, so its rows never stand in for the full scale's). Each scale has its
teacher (``teacher_path``), trained by hand first (docs/compress.md).
"""

from __future__ import annotations

from pathlib import Path

from crunet.errors import ConfigError
from crunet.study.grid import FM, TIER3_EPOCHS, RunSpec, _grid
from crunet.train.config import TrainConfig

TEACHER = "runs/compress/teacher-resnet32_cifar/last.pt"  # resnet32_cifar, 20 epochs, shifts + flips, float32
SMALL_SUBSET = 3000  # compress-small: 1/20 of the training images, so that every arm's seeds fit a 2-core CPU session
# compress-small's batch: at 128, 3,000 images are 23 steps an epoch, and the half-epoch warmup reaches tier 3's rates
# in 11 steps (its own in 234): both the teacher and DSFB diverged in their first epoch (validation loss 24). At 32,
# with every rate scaled by 32/128 (Goyal et al. 2017), the warmup climbs as tier 3's does, per step.
SMALL_BATCH, REFERENCE_BATCH = 32, 128
SCALES = {"compress": 0, "compress-small": SMALL_SUBSET}  # grid -> training images (0: all)
SHARED, PLAIN = "dsfb_resnet32_s16u1", "resnet32_cifar"
THIN_SIZE = "0.425"  # ResNet-32 at widths (10, 21, 42): 199,433 parameters against DSFB S16U1's 196,970
FINE_TUNE_EPOCHS = (2, 5)
FINE_TUNE_LR = "0.05"  # crunet compress's default: a converted network fine-tunes, it does not restart
SHARED_LR = "0.8"  # tier 3's rate for DSFB S16U1 (the learning-rate check); ResNet-32 keeps the default 0.2
CRU, RESNEXT = "crunet_small", "preresnext_small"
CRU_THIN_SIZE = "0.82"  # preresnext_small at 283,387 parameters against its CRU design's 288,810
CRU_LR = "0.4"  # tier 3's rate for both (the learning-rate check)
SOURCE = {SHARED: PLAIN, PLAIN: PLAIN, CRU: RESNEXT, RESNEXT: RESNEXT}  # each arm's model -> the teacher's
SEEDS = range(3)
INIT_METHODS = ("svd", "data", "norm", "cru")


def teacher_path(subset: int = 0, source: str = PLAIN) -> str:
    """The teacher checkpoint of model ``source`` at the scale that trains on ``subset`` images (0: all)."""
    path = TEACHER.replace(PLAIN, source)
    return path if not subset else path.replace("/last.pt", f"-n{subset}/last.pt")


def source_bottlenecks(model: str) -> dict:
    """``bottlenecks=source``: the design keywords of CRU model ``model`` at its ResNeXt's bottleneck widths."""
    from dataclasses import replace

    from crunet.study.grid import size_overrides

    if SOURCE.get(model) != RESNEXT or model == RESNEXT:
        raise ConfigError(f"study option bottlenecks=source: {model} is not a CRU design of {RESNEXT}")
    design, source = size_overrides(model, 1.0), size_overrides(RESNEXT, 1.0)
    return {**design, "stages": tuple(replace(stage, width=of_source.width)
                                      for stage, of_source in zip(design["stages"], source["stages"], strict=True))}


def recipe_option(epochs: int, extra: str, subset: int = 0) -> str:
    """Tier 3's recipe in float32: ``epochs`` epochs, random 2-pixel shifts plus flips, on ``subset`` images (0: all),
    then the arm's changes (after ``subset=``: ``kd`` and ``init`` read it to find their scale's teacher)."""
    scale = f"subset={subset},batch={SMALL_BATCH}," if subset else ""
    return f"epochs={epochs},pad=2,amp=none,{scale}{extra}"


def arm_options(epochs: int, subset: int = 0) -> dict[str, list[tuple[str, str]]]:
    """(model, option) of every arm at one training length, on ``subset`` images (0: all)."""
    def arm(model: str, extra: str) -> list[tuple[str, str]]:
        return [(model, recipe_option(epochs, extra, subset))]

    cru = "bottlenecks=source"
    if epochs in FINE_TUNE_EPOCHS:
        tune = f"lr={FINE_TUNE_LR},kd=1"
        return {"b_svd": arm(SHARED, f"orth_unique=1,{tune},init=svd"),
                "b_data": arm(SHARED, f"orth_unique=1,{tune},init=data"),
                "e": arm(PLAIN, f"size={THIN_SIZE},{tune},init=norm"),
                "b_cru": arm(CRU, f"{cru},{tune},init=cru"),
                "e_cru": arm(RESNEXT, f"size={CRU_THIN_SIZE},{tune},init=norm")}
    return {"a": arm(SHARED, f"orth_unique=1,lr={SHARED_LR}"), "c": arm(SHARED, f"orth_unique=1,lr={SHARED_LR},kd=1"),
            "d": arm(PLAIN, f"size={THIN_SIZE},kd=1"), "a_cru": arm(CRU, f"{cru},lr={CRU_LR}"),
            "c_cru": arm(CRU, f"{cru},lr={CRU_LR},kd=1"),
            "d_cru": arm(RESNEXT, f"size={CRU_THIN_SIZE},lr={CRU_LR},kd=1")}


def compress(results: Path | None = None, models: set[str] | None = None, subset: int = 0) -> list[RunSpec]:
    """The benchmark's runs on ``subset`` images (0: all): the DSFB pair's, then the CRU pair's, each cheapest first
    and seed-major within each training length."""
    runs: list[RunSpec] = []
    for family in ({SHARED, PLAIN}, {CRU, RESNEXT}):
        for epochs in (*FINE_TUNE_EPOCHS, TIER3_EPOCHS):
            cells = [cell for arm in arm_options(epochs, subset).values() for cell in arm if cell[0] in family]
            length = [r for model, option in cells for r in _grid(FM, (model,), SEEDS, (option,))]
            runs += sorted(length, key=lambda run: run.seed)
    return [r for r in runs if models is None or r.model in models]


def apply_option(cfg: TrainConfig, name: str, value: str) -> None:
    """The grid's own study options: ``kd=1`` (distil from the teacher), ``init=METHOD`` (start from it converted),
    ``batch=N`` (N images a step, the rates scaled linearly from ``REFERENCE_BATCH``'s)."""
    if name == "batch":
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"study option batch={value}: expected a whole number of images, 1 or more")
        cfg.batch_size, cfg.lr_ref_batch = int(value), REFERENCE_BATCH
        return
    if name == "kd" and value != "1" or name == "init" and value not in INIT_METHODS:
        raise ConfigError(f"study option {name}={value}: expected kd=1 or init=one of {', '.join(INIT_METHODS)}")
    if cfg.model not in SOURCE:
        raise ConfigError(f"study option {name}={value}: no teacher for {cfg.model} (one of {', '.join(SOURCE)})")
    teacher = teacher_path(cfg.subset, SOURCE[cfg.model])  # a run without it is refused by the trainer, naming it
    if name == "kd":
        cfg.teacher = teacher
    else:
        cfg.init_from, cfg.init_method = teacher, value
