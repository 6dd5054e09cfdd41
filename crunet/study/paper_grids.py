"""The papers' tables as study grids: ``crunet study run dsfb-cifar10 --data DIR`` trains every row of the DSFB
CIFAR-10 table under the source's recipe (``dsfb-cifar``), one seed by default, recorded in ``results/<grid>.csv``
like the other grids (resumable, mergeable); ``crunet study report`` puts each row beside its published error.

A run's key is ``<data set>/<model>/<option>/seed<N>``. A full run has no option; a shortened one (``--epochs N``,
``--subset N``: a smoke test) carries it in its key, so it never stands in for a full run, and the report marks it
not comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

from crunet.analysis.published_results import PUBLISHED, PublishedTable
from crunet.errors import ConfigError, DataError
from crunet.study.grid import Recipe, RunSpec


@dataclass(frozen=True)
class PaperGrid:
    name: str  # the grid, and the published table it reproduces
    dataset: str  # the runs' data set: what ``--data`` must hold (``crunet.data.detect_kind``)
    training: str  # the training recipe (``crunet train --recipe``)
    epochs: int  # the recipe's length: a run with fewer epochs is a smoke test
    models: tuple[str, ...]
    kinds: tuple[str, ...]  # data kinds that hold this data set
    processes: int = 1  # GPUs the published runs used: `crunet study run` suggests --nproc when given fewer

    @property
    def published(self) -> PublishedTable:
        return PUBLISHED[self.name]

    def recipe(self, data: str) -> Recipe:
        """The study recipe of this grid's runs on the user's ``data``."""
        return Recipe(data=data, epochs=self.epochs, training=self.training)

    def runs(self, seeds: int = 1, epochs: int | None = None, subset: int | None = None,
             models: set[str] | None = None) -> list[RunSpec]:
        """Every row at seeds 0..``seeds``-1, seed-major; shortened to ``epochs`` and ``subset`` images if given."""
        option = shortening(self, epochs, subset)
        return [RunSpec(self.dataset, m, seed, option) for seed in range(seeds) for m in self.models
                if models is None or m in models]

    def check_data(self, data: str | None) -> None:
        """``data`` holds this grid's data set, or one line saying what it holds and what the grid needs."""
        from crunet.data import detect_kind

        if data is None:
            raise ConfigError(f"grid {self.name} needs --data DIR: the {self.dataset} data it trains on")
        kind = detect_kind(data)
        if kind not in self.kinds:
            needs = self.dataset if self.kinds == (self.dataset,) else f"{self.dataset} ({' or '.join(self.kinds)})"
            raise DataError(f"--data {data} holds {kind} data; grid {self.name} trains on {needs}")


def check_subset(grid: PaperGrid, subset: int | None) -> None:
    """A ``--subset`` of at least one of the recipe's batches (the trainer drops a last partial batch)."""
    from crunet.train.recipes import resolve

    batch = resolve(grid.training, None, None).get("batch_size")
    if subset is not None and batch and subset < batch:
        raise ConfigError(f"--subset {subset}: recipe {grid.training} trains batches of {batch} images; give "
                          f"--subset {batch} or more")


def shortening(grid: PaperGrid, epochs: int | None, subset: int | None) -> str:
    """The option of a shortened run (``epochs=N``, ``subset=N``); "" for the full recipe."""
    if epochs is not None and not 1 <= epochs <= grid.epochs:
        raise ConfigError(f"--epochs {epochs}: grid {grid.name} trains {grid.epochs} epochs; shorten it to 1 to "
                          f"{grid.epochs}")
    if subset is not None and subset < 1:
        raise ConfigError(f"--subset {subset}: give a number of training images, 1 or more")
    parts = ([f"epochs={epochs}"] if epochs is not None and epochs != grid.epochs else []) + (
        [f"subset={subset}"] if subset is not None else [])
    return ",".join(parts)


def is_shortened(option: str) -> bool:
    """Whether a paper grid's run was shortened (its error is not comparable with the published one)."""
    from crunet.study.grid import parse_option

    return bool({"epochs", "subset"} & set(parse_option(option)))


DSFB_CIFAR10_MODELS = ("resnet32_cifar", "dsfb_resnet32_s8u1", "dsfb_resnet32_s16u1", "dsfb_resnet32_s16u1_double",
                       "resnet56_cifar", "dsfb_resnet56_s8u1", "dsfb_resnet56_s16u1", "dsfb_resnet56_s16u1_double")

PAPER_GRIDS = {g.name: g for g in (
    PaperGrid("dsfb-cifar10", "cifar10", "dsfb-cifar", 300, DSFB_CIFAR10_MODELS, ("cifar10",)),
    PaperGrid("dsfb-cifar100", "cifar100", "dsfb-cifar", 300,
              ("dsfb_resnet34_cifar100_s8u1", "dsfb_resnet34_cifar100_s16u1", "dsfb_resnet34_cifar100_s32u1"),
              ("cifar100",)),
    PaperGrid("cru-imagenet", "imagenet", "cru-imagenet", 100, ("preresnet50", "preresnext50_32x4d", "crunet56"),
              ("folder",), processes=8),
    PaperGrid("cru-places365", "places365", "cru-places365", 100, ("preresnext101_32x4d", "crunet116"),
              ("places365",), processes=8),
)}


def paper_grid(name: str) -> PaperGrid:
    if name not in PAPER_GRIDS:
        raise ConfigError(f"unknown paper grid {name!r}; choose from {', '.join(PAPER_GRIDS)}")
    return PAPER_GRIDS[name]
