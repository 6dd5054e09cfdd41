"""What a study runs: one recipe per data set and a list of runs, each a (data set, model, option, seed).

An option is a comma-separated list of ``name=value`` changes to the recipe or the model:
``lr=0.1`` (learning rate), ``orth_lambda=0`` (DSFB's regularizer off), ``orth_unique=1`` (DSFB's regularizer in the
form of the source's CIFAR-10 script, covering the unique filters too), ``size=2`` (about twice the parameters: every
width times sqrt(2)), ``amp=bf16``, ``holdout=10000`` (validate on held-out training images, never the test set),
``epochs=20`` and ``pad=2`` (random shifts of up to 2 pixels, with the flips), which replace the recipe's, and
``subset=N`` (train on N images: a smoke test). A recipe with a training recipe (``crunet.train.recipes``, the paper
grids') resolves it for each run's model; a shorter ``epochs=`` scales its step milestones in proportion.

A DSFB cell without ``orth_unique=1`` runs the shared-only form of the regularizer, whatever the model's default:
tiers 1 and 2 ran before the CIFAR-10 form existed, and their keys keep meaning what they ran.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from crunet.errors import ConfigError, CrunetError
from crunet.study.results_csv import LR_CHECK, grid_csv, read_rows
from crunet.train.config import TrainConfig

OPTION_NAMES = ("lr", "orth_lambda", "orth_unique", "size", "amp", "holdout", "epochs", "pad", "subset",
                "kd", "init", "batch", "bottlenecks")  # the last four: the compress grid's (crunet.study.compress_grid)


@dataclass(frozen=True)
class Recipe:
    """The fixed training recipe of a data set: every run on it uses these settings, changed only by its option."""

    data: str | None  # None: Fashion-MNIST from the Debian package
    epochs: int
    settings: dict[str, Any] = field(default_factory=dict)  # further TrainConfig fields (tests: subset, batch_size)
    training: str | None = None  # a training recipe (crunet train --recipe), resolved per model under the settings


RECIPES = {
    "fashion-mnist": Recipe(data=None, epochs=5),
    "mnist": Recipe(data="data/mnist", epochs=2),  # IDX files written by scripts/get-mnist
}


@dataclass(frozen=True)
class RunSpec:
    dataset: str
    model: str
    seed: int
    option: str = ""

    @property
    def key(self) -> str:
        return "/".join((self.dataset, self.model, self.option or "-", f"seed{self.seed}"))

    def train_config(self, recipe: Recipe, out: str) -> TrainConfig:
        trained = training_values(recipe, self.model)
        values = {**trained, "model": self.model, "data": recipe.data, "epochs": recipe.epochs, "seed": self.seed,
                  "out": out, "progress": "none", "tensorboard": False, "plot": False, "log_shared_grads": True,
                  **recipe.settings}
        cfg = TrainConfig(**values)
        kwargs: dict[str, Any] = dict(trained.get("model_kwargs", {}))
        if recipe.training is None and has_unique_form(self.model):
            kwargs["orth_unique"] = False
        for name, value in parse_option(self.option).items():
            if name == "orth_lambda":
                kwargs["orth_lambda"] = float(value)
            elif name == "orth_unique":
                kwargs["orth_unique"] = _flag(name, value)
            elif name == "size":
                kwargs.update(size_overrides(self.model, float(value)))
            elif name == "bottlenecks":
                from crunet.study.compress_grid import source_bottlenecks

                if value != "source":
                    raise ConfigError(f"study option bottlenecks={value}: expected bottlenecks=source")
                kwargs.update(source_bottlenecks(self.model))
            elif name in ("kd", "init", "batch"):
                from crunet.study.compress_grid import apply_option

                apply_option(cfg, name, value)
            else:
                setattr(cfg, name, {"lr": float, "holdout": int, "amp": str, "epochs": int, "pad": int,
                                    "subset": int}[name](value))
        if "step_epochs" in trained and cfg.epochs != recipe.epochs:
            cfg.step_epochs = scaled_milestones(trained["step_epochs"], recipe.epochs, cfg.epochs)
        cfg.model_kwargs = kwargs
        return cfg


def training_values(recipe: Recipe, model: str) -> dict[str, Any]:
    """The TrainConfig values of ``recipe``'s training recipe for ``model`` on its data (none without one)."""
    if recipe.training is None:
        return {}
    from crunet.data import detect_kind
    from crunet.train.recipes import resolve

    return resolve(recipe.training, detect_kind(recipe.data), model)


def scaled_milestones(milestones: list[int], epochs: int, shortened: int) -> list[int]:
    """Step milestones of an ``epochs``-long schedule at the same fractions of a ``shortened`` one (at least 1)."""
    return [max(1, round(m * shortened / epochs)) for m in milestones]


@functools.cache  # a model built on the meta device per call: 0.1 s, for each of a grid's hundreds of runs
def has_unique_form(model: str) -> bool:
    """Whether ``model``'s regularizer has the CIFAR-10 form (``orth_unique``) to switch."""
    from crunet.models import create_model

    with torch.device("meta"):
        return hasattr(create_model(model, num_classes=10, in_chans=1), "orth_unique")


def _flag(name: str, value: str) -> bool:
    if value not in ("0", "1"):
        raise ConfigError(f"study option {name}={value}: expected {name}=0 or {name}=1")
    return value == "1"


def parse_option(option: str) -> dict[str, str]:
    """``"lr=0.1,size=2"`` -> ``{"lr": "0.1", "size": "2"}``; an unknown name or a malformed part is an error."""
    parsed = {}
    for part in filter(None, option.split(",")):
        name, sep, value = part.partition("=")
        if not sep or not value or name not in OPTION_NAMES:
            raise ConfigError(f"study option {part!r}: expected name=value with name one of {', '.join(OPTION_NAMES)}")
        parsed[name] = value
    return parsed


def size_overrides(model: str, factor: float) -> dict[str, Any]:
    """Design overrides giving ``model`` about ``factor`` times its parameters: widths times sqrt(factor) (each
    design says which fields are its widths: ``width_overrides``)."""
    from crunet.models import create_model

    cfg = create_model(model, num_classes=10, in_chans=1).cfg
    if not hasattr(cfg, "width_overrides"):
        raise ConfigError(f"study option size=: {model} has no width fields to scale")
    return cfg.width_overrides(math.sqrt(factor))


def _grid(datasets: tuple[str, ...], models: tuple[str, ...], seeds: range | tuple[int, ...],
          options: tuple[str, ...] = ("",)) -> list[RunSpec]:
    return [RunSpec(d, m, s, o) for d in datasets for m in models for o in options for s in seeds]


FM, MNIST = ("fashion-mnist",), ("mnist",)
CRU_TRIO = ("preresnet_small", "preresnext_small", "crunet_small")
CRU_CLAIM_MODELS = ("preresnext_small", "crunet_small", "crunet_small_plain_last")  # tier 3's CRU claim, both patterns
DSFB_PAIR = ("resnet32_cifar", "dsfb_resnet32_s16u1")
LR_CHECK_MODELS = ("crunet_small", "preresnext_small", "resnet32_cifar", "dsfb_resnet32_s16u1", "preresnet_small")
LR_CHOICES = ("0.2", "0.1", "0.4")  # the default first; the range grows past an edge that wins (see lr_check)
DEFAULT_LR = LR_CHOICES[0]
CLEARLY_BETTER = 0.15  # points of held-out top-1: above the seed-to-seed sd of the default run (0.08-0.14)
RATE_FAMILY = {  # models that take the rate checked on their family's representative
    "resnet56_cifar": "resnet32_cifar", "dsfb_resnet32_s8u1": "dsfb_resnet32_s16u1",
    "dsfb_resnet32_s16u1_double": "dsfb_resnet32_s16u1", "dsfb_resnet56_s16u1": "dsfb_resnet32_s16u1",
    "crunet_small_plain_last": "crunet_small"}
HOLDOUT = 10_000  # of Fashion-MNIST's 60,000 training images
LR_CHECK_READ = ("key", "model", "option", "test_top1")  # what the check reads of a row: refused if empty


def lr_option(lr: str) -> str:
    return f"lr={lr},holdout={HOLDOUT}"


def lr_check(results: Path | None = None, models: set[str] | None = None) -> list[RunSpec]:
    """One seed per family and learning rate, validated on held-out training images (the fairness check). Where
    the smallest or largest rate tried wins, the next one beyond it (half or double) joins the grid, so a rerun
    extends the search until the best rate is inside the range."""
    specs = _grid(FM, LR_CHECK_MODELS, (0,), tuple(lr_option(lr) for lr in LR_CHOICES))
    scores: dict[str, dict[float, float]] = {}
    for row in read_rows(grid_csv(results, LR_CHECK), LR_CHECK_READ) if results else []:
        lr = float(parse_option(row["option"])["lr"])
        scores.setdefault(row["model"], {})[lr] = float(row["test_top1"])
    for model, by_lr in scores.items():
        tried = sorted({float(parse_option(s.option)["lr"]) for s in specs if s.model == model} | set(by_lr))
        if set(tried) - set(by_lr):
            continue  # the search for this model is not finished
        best = max(by_lr, key=by_lr.get)
        beyond = best / 2 if best == tried[0] else best * 2 if best == tried[-1] else None
        if beyond is not None:
            specs.append(RunSpec(FM[0], model, 0, lr_option(f"{beyond:g}")))
    return _of_models(specs, models)


def family_rates(results: Path | None) -> dict[str, str]:
    """The learning rate of each family whose check has finished: the default, unless another rate beat it on the
    held-out images by more than ``CLEARLY_BETTER`` points; then the best one."""
    rows = read_rows(grid_csv(results, LR_CHECK), LR_CHECK_READ) if results else []
    pending = {(s.model, s.option) for s in lr_check(results)} - {(r["model"], r["option"]) for r in rows}
    rates = {}
    for model in LR_CHECK_MODELS:
        scores = {parse_option(r["option"])["lr"]: float(r["test_top1"]) for r in rows if r["model"] == model}
        if DEFAULT_LR not in scores or any(m == model for m, _ in pending):
            continue
        best = max(scores, key=scores.get)
        rates[model] = best if scores[best] > scores[DEFAULT_LR] + CLEARLY_BETTER else DEFAULT_LR
    return rates


def rate_of(model: str, rates: dict[str, str]) -> str | None:
    """The learning rate ``model`` is run at in tiers 1 and 2 (None: its family's check has not finished)."""
    family = RATE_FAMILY.get(model, model)
    return rates.get(family) if family in LR_CHECK_MODELS else DEFAULT_LR  # unchecked families keep the default


def _of_models(runs: list[RunSpec], models: set[str] | None) -> list[RunSpec]:
    """The runs of ``models`` (all of them when None)."""
    return [r for r in runs if models is None or r.model in models]


def _at_family_rates(runs: list[RunSpec], rates: dict[str, str], models: set[str] | None) -> list[RunSpec]:
    runs = _of_models(runs, models)  # only the chosen models need a finished check
    pending = sorted({RATE_FAMILY.get(r.model, r.model) for r in runs if rate_of(r.model, rates) is None})
    if pending:
        raise CrunetError(f"the learning-rate check has not finished for {', '.join(pending)}: run "
                          "`crunet study run lr-check` first (tiers 1 to 3 use each family's rate from it)")
    return [replace(r, option=",".join(filter(None, (f"lr={rate}" if rate != DEFAULT_LR else "", r.option))))
            for r in runs if (rate := rate_of(r.model, rates))]


def tier1(results: Path | None = None, models: set[str] | None = None) -> list[RunSpec]:
    """The claims: the CRU trio and the DSFB pair with its regularizer ablation, 3 seeds on Fashion-MNIST; the CRU
    trio with 2 seeds on MNIST; each family at its rate from the check. Seed-major, so that a grid stopped part-way
    leaves every cell with as many seeds as the others, give or take one."""
    runs = (_grid(FM, CRU_TRIO + DSFB_PAIR, range(3))
            + _grid(FM, ("dsfb_resnet32_s16u1",), range(3), ("orth_lambda=0",))
            + _grid(MNIST, CRU_TRIO, range(2)))
    return sorted(_at_family_rates(runs, family_rates(results), models), key=lambda run: run.seed)


def tier2(results: Path | None = None, models: set[str] | None = None) -> list[RunSpec]:
    """The rest: more DSFB variants, ResNet-56 and the size axis (each family as a curve) at the family rates, and
    bf16 against float32 on the default run (both at the default rate)."""
    runs = (_grid(FM, ("dsfb_resnet32_s8u1", "dsfb_resnet32_s16u1_double", "resnet56_cifar", "dsfb_resnet56_s16u1"),
                  (0,))
            + _grid(FM, ("preresnext_small", "crunet_small", "resnet32_cifar", "dsfb_resnet32_s16u1"), (0,),
                    ("size=0.5", "size=2")))
    bf16 = _of_models(_grid(FM, ("crunet_small",), range(3), ("amp=bf16",)), models)
    return _at_family_rates(runs, family_rates(results), models) + bf16


TIER3_EPOCHS = 20  # E: tier 3's training length (the E-versus-2E check below says whether it is long enough)
CONVERGENCE_CHECK_MODEL = "preresnet_small"  # the cheapest family, trained at E and at 2E (one seed each)


def tier3_option(epochs: int, extra: str = "") -> str:
    """Tier 3's recipe: ``epochs`` epochs, random 2-pixel shifts plus flips, bf16 autocast in every cell."""
    return ",".join(filter(None, (f"epochs={epochs},pad=2,amp=bf16", extra)))


# tier 3's options, less their rates: the grid runs them and the report (cells.py) reads them by these names
TIER3_BASE = tier3_option(TIER3_EPOCHS)  # every tier-3 option, less its rate, is this one plus at most one change
TIER3_LONG = tier3_option(2 * TIER3_EPOCHS)  # the 2E runs of CONVERGENCE_CHECK_MODEL, ResNet-32 and the CRU claim
CIFAR_REGULARIZER = tier3_option(TIER3_EPOCHS, "orth_unique=1")  # DSFB with the source's CIFAR-10 regularizer
CIFAR_REGULARIZER_LONG = tier3_option(2 * TIER3_EPOCHS, "orth_unique=1")  # DSFB's 2E run
NO_REGULARIZER = tier3_option(TIER3_EPOCHS, "orth_lambda=0")


def tier3(results: Path | None = None, models: set[str] | None = None) -> list[RunSpec]:
    """The claims with the authors' configurations, trained longer: the CRU trio and the CRU network that shares as
    the released ones do (last stage plain); ResNet-32 and DSFB S16U1 with the CIFAR-10 regularizer, the shared-only
    one and none; each family at its rate. The E-versus-2E check comes first (the cheapest family's 2E run and its
    runs at E): it decides whether E is long enough before the rest of the grid is spent on it. Then seed-major. Then,
    added later: DSFB with the CIFAR-10 regularizer and ResNet-32 at 2E (seed 0, once E proved short), the pair whose
    gap was still closing at E; seeds 3 and 4 of the CRU claim's cells, seed-major, whose verdict three seeds left
    undecided; and the CRU claim's cells at 2E, seeds 0 to 2, seed-major (their gap shrank from 5 epochs to E: is E
    long enough for it? About 11 core-hours where bf16 is native, ten times that where it is emulated: a GPU's job)."""
    runs = (_grid(FM, (CONVERGENCE_CHECK_MODEL,), (0,), (TIER3_LONG,))
            + _grid(FM, CRU_CLAIM_MODELS + ("resnet32_cifar",), range(3), (TIER3_BASE,))
            + _grid(FM, ("dsfb_resnet32_s16u1",), range(3), (CIFAR_REGULARIZER, TIER3_BASE, NO_REGULARIZER))
            + _grid(FM, ("preresnet_small",), range(2), (TIER3_BASE,)))
    dsfb_pair_at_2e = (_grid(FM, ("dsfb_resnet32_s16u1",), (0,), (CIFAR_REGULARIZER_LONG,))
                       + _grid(FM, ("resnet32_cifar",), (0,), (TIER3_LONG,)))
    more_cru_seeds = sorted(_grid(FM, CRU_CLAIM_MODELS, (3, 4), (TIER3_BASE,)), key=lambda run: run.seed)
    cru_claim_at_2e = sorted(_grid(FM, CRU_CLAIM_MODELS, range(3), (TIER3_LONG,)), key=lambda run: run.seed)
    rates = family_rates(results)
    return (sorted(_at_family_rates(runs, rates, models),
                   key=lambda run: (run.model != CONVERGENCE_CHECK_MODEL, run.seed))
            + _at_family_rates(dsfb_pair_at_2e + more_cru_seeds + cru_claim_at_2e, rates, models))


def compress(results: Path | None = None, models: set[str] | None = None) -> list[RunSpec]:
    """The compress benchmark: sharing against thinning as ways to shrink a trained network (compress_grid.py)."""
    from crunet.study.compress_grid import compress as runs

    return runs(results, models)


def compress_small(results: Path | None = None, models: set[str] | None = None) -> list[RunSpec]:
    """The compress benchmark on 3,000 training images, its own teacher too: every arm's seeds in a CPU session."""
    from crunet.study.compress_grid import SCALES
    from crunet.study.compress_grid import compress as runs

    return runs(results, models, SCALES["compress-small"])


GRIDS = {LR_CHECK: lr_check, "tier1": tier1, "tier2": tier2, "tier3": tier3, "compress": compress,
         "compress-small": compress_small}


def with_seeds(runs: list[RunSpec], seeds: int) -> list[RunSpec]:
    """``runs`` with every cell (data set, model, option) run at seeds 0 to ``seeds`` - 1 at least, seed-major: more
    seeds than a grid's own count, as time allows; a grid stopped part-way leaves the cells balanced."""
    cells = {(r.dataset, r.model, r.option): None for r in runs}
    extra = [RunSpec(d, m, seed, o) for d, m, o in cells for seed in range(seeds)]
    return sorted(dict.fromkeys(runs + extra), key=lambda run: run.seed)


def grid(name: str, results: Path | None = None, models: set[str] | None = None) -> list[RunSpec]:
    """The runs of grid ``name`` (of ``models`` only, if given); the learning-rate check reads what ``results``
    holds to extend its search, tiers 1 and 2 to take each family's rate from it."""
    if name not in GRIDS:
        raise ConfigError(f"unknown grid {name!r}; choose from {', '.join(GRIDS)}")
    return GRIDS[name](results, models)
