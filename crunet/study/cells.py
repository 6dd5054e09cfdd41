"""The study's data: the checked rows of its CSVs grouped into cells, and the questions the report asks of them as
named comparisons (tiers 1 and 2, and tier 3 with the authors' configurations), answered with ``seed_stats.py``.
Rendering (markdown in ``report.py``, figures in ``plots.py``) reads from here and computes nothing of its own."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from crunet.study.grid import (
    CIFAR_REGULARIZER,
    CIFAR_REGULARIZER_LONG,
    CONVERGENCE_CHECK_MODEL,
    DEFAULT_LR,
    NO_REGULARIZER,
    TIER3_BASE,
    TIER3_EPOCHS,
    TIER3_LONG,
    family_rates,
    parse_option,
    rate_of,
)
from crunet.study.results_csv import LR_CHECK, epochs_file, grid_csv, read_epochs, read_rows
from crunet.study.seed_stats import Difference, difference, mean_std

Row = dict[str, str]
Table = dict[tuple[str, str, str, str], list[Row]]  # (data set, model, option without its rate, rate): its runs

GRID_FILES = ("tier1.csv", "tier2.csv")  # the claims and the rest; the lr check is the fairness check
TIER3_FILE = "tier3.csv"
REPORTED = ("key", "test_top1")  # what a row needs to be reported on
TIER3_REPORTED = ("key", "model", "option", "seed", "params", "test_top1", "best_top1", "best_epoch")
DATASET = "fashion-mnist"
MEASURED_CPU_SHARE = 0.9  # below it another process slowed the run: its time is not a measurement


# --- loading ------------------------------------------------------------------------------------------------------

def load(results: Path) -> list[Row]:
    """The rows of tiers 1 and 2, refusing (by file and line) one that is torn or lacks what the report reads."""
    return [row for name in GRID_FILES for row in read_rows(Path(results) / name, REPORTED)]


def load_lr_check(results: Path) -> list[Row]:
    return read_rows(grid_csv(results, LR_CHECK), REPORTED)


def load_tier3(results: Path) -> list[Row]:
    """tier3.csv's rows, refusing (by file and line) one that is torn or lacks what the section reads."""
    return read_rows(Path(results) / TIER3_FILE, TIER3_REPORTED)


def epoch_metrics(results: Path, key: str) -> list[Row]:
    """A run's per-epoch metrics (none when its file is absent), refusing a malformed or torn line by file and line."""
    return read_epochs(Path(results) / "epochs" / epochs_file(key))


@dataclass(frozen=True)
class Study:
    """Everything the report reads, loaded once: tiers 1 and 2, the learning-rate check, the family rates and
    tier 3; and the folder, whose ``epochs/`` holds each run's per-epoch metrics."""

    rows: list[Row]
    lr_rows: list[Row]
    rates: dict[str, str]
    tier3_rows: list[Row]
    results: Path

    @classmethod
    def load(cls, results: Path) -> Study:
        results = Path(results)
        return cls(load(results), load_lr_check(results), family_rates(results), load_tier3(results), results)

    @property
    def claims(self) -> list[Row]:
        """Tiers 1 and 2 at their family rates (options without the rate): what the size and ablation plots draw."""
        return at_family_rates(self.rows, self.rates)


# --- cells --------------------------------------------------------------------------------------------------------

def cells(rows: list[Row]) -> Table:
    """Runs grouped by (data set, model, option without its rate, learning rate)."""
    grouped: Table = defaultdict(list)
    for row in rows:
        grouped[(row["dataset"], row["model"], *split_rate(row["option"]))].append(row)
    return dict(sorted(grouped.items()))


def split_rate(option: str) -> tuple[str, str]:
    """``"lr=0.4,size=2"`` -> ``("size=2", "0.4")``; an option without a rate ran at the default one."""
    parts = parse_option(option)
    rate = parts.pop("lr", DEFAULT_LR)
    return ",".join(f"{k}={v}" for k, v in parts.items()), rate


def at_family_rates(rows: list[Row], rates: dict[str, str]) -> list[Row]:
    """The runs at their family's rate, with the rate taken out of the option."""
    out = []
    for row in rows:
        option, rate = split_rate(row["option"])
        if rate == (rate_of(row["model"], rates) or DEFAULT_LR):
            out.append({**row, "option": option})
    return out


def on_cpu(row: Row) -> bool:
    return row.get("device", "") in ("", "cpu")  # "": a row from before the column, all of them CPU runs


def timed(row: Row) -> bool:
    """A CPU run that had its core to itself: its time is a measurement."""
    return on_cpu(row) and bool(row.get("cpu_share")) and float(row["cpu_share"]) >= MEASURED_CPU_SHARE


def cell_label(model: str, option: str) -> str:
    """``crunet_small`` or ``dsfb_resnet32_s16u1 orth_lambda=0`` or ``preresnet_small 2E (40 epochs)``: the model and
    what its option changes from tier 3's recipe."""
    recipe, parts = parse_option(TIER3_BASE), parse_option(option)
    changes = [f"{k}={v}" for k, v in parts.items() if recipe.get(k) != v and k != "epochs"]
    if parts.get("epochs", recipe["epochs"]) != recipe["epochs"]:
        epochs = int(parts["epochs"])
        factor = f"{epochs // TIER3_EPOCHS}E " if epochs % TIER3_EPOCHS == 0 else ""
        changes.insert(0, f"{factor}({epochs} epochs)")
    return " ".join([f"`{model}`", *changes])


# --- statistics over seeds ----------------------------------------------------------------------------------------

def errors(group: list[Row]) -> list[float]:
    """Test error after the last epoch, one per run."""
    return [100.0 - float(r["test_top1"]) for r in group]


def best_errors(group: list[Row]) -> list[float]:
    """The lowest test error over the epochs, one per run (what the DSFB authors report)."""
    return [100.0 - float(r["best_top1"]) for r in group]


def pooled_seed_sd(table: Table, dataset: str) -> tuple[float, int]:
    """The seed-to-seed standard deviation of test error pooled over every cell of ``dataset`` with 2 runs or more
    (``table``: the runs grouped by ``cells``), and its degrees of freedom (NaN and 0 while no cell has 2 runs)."""
    squares, df = 0.0, 0
    for (cell_dataset, *_), group in table.items():
        if cell_dataset == dataset and len(group) > 1:
            values = errors(group)
            mean = statistics.fmean(values)
            squares += sum((v - mean) ** 2 for v in values)
            df += len(values) - 1
    return (math.sqrt(squares / df), df) if df else (math.nan, 0)


# --- the questions ------------------------------------------------------------------------------------------------

Cell = tuple[str, str]  # (model, option without its rate)
DSFB = "dsfb_resnet32_s16u1"
REGULARIZERS = {  # DSFB S16U1's three tier-3 regularizer settings (option without the rate): their names
    CIFAR_REGULARIZER: "CIFAR-10 regularizer (orth_unique=1)", TIER3_BASE: "shared-only regularizer",
    NO_REGULARIZER: "no regularizer (orth_lambda=0)"}


def regularizer_setting(row: Row) -> str | None:
    """The name of a DSFB S16U1 tier-3 run's regularizer setting (REGULARIZERS); None for any other run."""
    return REGULARIZERS.get(split_rate(row["option"])[0]) if row["model"] == DSFB else None


FAMILIES = {  # curves of the Pareto plot: a base model and its size=0.5 / size=2 variants
    "preresnext_small": "ResNeXt (pre-act, small)", "crunet_small": "CRU-Net (small)",
    "resnet32_cifar": "ResNet-32", "dsfb_resnet32_s16u1": "DSFB ResNet-32 S16U1",
}
SIZE_OPTIONS = ("size=0.5", "", "size=2")


@dataclass(frozen=True)
class Comparison:
    """One question: the candidate cell's last-epoch error minus the reference's, on ``dataset``. ``rate``: the
    learning rate of both cells; None: each at its family's rate."""

    question: str
    candidate: Cell
    reference: Cell
    dataset: str = DATASET
    rate: str | None = None

    def rates(self, rates: dict[str, str]) -> tuple[str, str]:
        """The rates of the candidate and the reference, given the family rates (the default while unknown)."""
        def rate(model: str) -> str:
            return self.rate or rate_of(model, rates) or DEFAULT_LR

        return rate(self.candidate[0]), rate(self.reference[0])


CRU_VS_RESNEXT = Comparison("CRU vs ResNeXt units at equal size", ("crunet_small", ""), ("preresnext_small", ""))
DSFB_VS_RESNET = Comparison("DSFB S16U1 vs its unshared ResNet-32", (DSFB, ""), ("resnet32_cifar", ""))
DSFB_ABLATION = Comparison("DSFB S16U1 without vs with the orthogonality regularizer", (DSFB, "orth_lambda=0"),
                           (DSFB, ""))
COMPARISONS = (  # tiers 1 and 2
    CRU_VS_RESNEXT,
    Comparison("CRU vs ResNet units", ("crunet_small", ""), ("preresnet_small", "")),
    Comparison("ResNeXt vs ResNet units", ("preresnext_small", ""), ("preresnet_small", "")),
    Comparison("CRU vs ResNeXt units at equal size", ("crunet_small", ""), ("preresnext_small", ""), "mnist"),
    Comparison("CRU vs ResNet units", ("crunet_small", ""), ("preresnet_small", ""), "mnist"),
    DSFB_VS_RESNET,
    DSFB_ABLATION,
    Comparison("DSFB S8U1 vs its unshared ResNet-32", ("dsfb_resnet32_s8u1", ""), ("resnet32_cifar", "")),
    Comparison("DSFB S16U1 Double vs its unshared ResNet-32", ("dsfb_resnet32_s16u1_double", ""),
               ("resnet32_cifar", "")),
    Comparison("DSFB-56 S16U1 vs its unshared ResNet-56", ("dsfb_resnet56_s16u1", ""), ("resnet56_cifar", "")),
    Comparison("DSFB S16U1 vs its unshared ResNet-32, both at half size", (DSFB, "size=0.5"),
               ("resnet32_cifar", "size=0.5")),
    Comparison("DSFB S16U1 vs its unshared ResNet-32, both at double size", (DSFB, "size=2"),
               ("resnet32_cifar", "size=2")),
    Comparison("Sharing vs thinning at about equal size: DSFB S16U1 vs ResNet-32 at half size", (DSFB, ""),
               ("resnet32_cifar", "size=0.5")),
    Comparison("CRU vs ResNeXt units at half size", ("crunet_small", "size=0.5"), ("preresnext_small", "size=0.5")),
    Comparison("CRU vs ResNeXt units at double size", ("crunet_small", "size=2"), ("preresnext_small", "size=2")),
    Comparison("bf16 vs float32 autocast (crunet_small)", ("crunet_small", "amp=bf16"), ("crunet_small", ""),
               rate=DEFAULT_LR),
)
# tier 3 runs each family at one rate: its cells are found at whichever rate they ran
T3_CRU_VS_RESNEXT = Comparison("CRU vs ResNeXt units at equal size", ("crunet_small", TIER3_BASE),
                               ("preresnext_small", TIER3_BASE))
T3_RELEASED_VS_RESNEXT = Comparison("Released-pattern CRU (last stage plain ResNeXt) vs ResNeXt",
                                    ("crunet_small_plain_last", TIER3_BASE), ("preresnext_small", TIER3_BASE))
T3_DSFB_CIFAR_VS_RESNET = Comparison("DSFB S16U1 (CIFAR-10 regularizer) vs its unshared ResNet-32",
                                     (DSFB, CIFAR_REGULARIZER), ("resnet32_cifar", TIER3_BASE))
T3_DSFB_SHARED_ONLY_VS_RESNET = Comparison("DSFB S16U1 (shared-only regularizer) vs its unshared ResNet-32",
                                           (DSFB, TIER3_BASE), ("resnet32_cifar", TIER3_BASE))
T3_DSFB_CIFAR_VS_RESNET_2E = Comparison(
    f"DSFB S16U1 (CIFAR-10 regularizer) vs its unshared ResNet-32, at 2E ({2 * TIER3_EPOCHS} epochs)",
    (DSFB, CIFAR_REGULARIZER_LONG), ("resnet32_cifar", TIER3_LONG))
T3_CRU_VS_RESNEXT_2E = Comparison(f"CRU vs ResNeXt units at equal size, at 2E ({2 * TIER3_EPOCHS} epochs)",
                                  ("crunet_small", TIER3_LONG), ("preresnext_small", TIER3_LONG))
T3_RELEASED_VS_RESNEXT_2E = Comparison(
    f"Released-pattern CRU (last stage plain ResNeXt) vs ResNeXt, at 2E ({2 * TIER3_EPOCHS} epochs)",
    ("crunet_small_plain_last", TIER3_LONG), ("preresnext_small", TIER3_LONG))
T3_NONE_VS_CIFAR = Comparison("DSFB S16U1: no regularizer vs the CIFAR-10 one", (DSFB, NO_REGULARIZER),
                              (DSFB, CIFAR_REGULARIZER))
T3_NONE_VS_SHARED_ONLY = Comparison("DSFB S16U1: no regularizer vs the shared-only one", (DSFB, NO_REGULARIZER),
                                    (DSFB, TIER3_BASE))
TIER3_COMPARISONS = (
    T3_CRU_VS_RESNEXT,
    T3_RELEASED_VS_RESNEXT,
    T3_CRU_VS_RESNEXT_2E,
    T3_RELEASED_VS_RESNEXT_2E,
    Comparison("Released-pattern CRU vs CRU in every stage", ("crunet_small_plain_last", TIER3_BASE),
               ("crunet_small", TIER3_BASE)),
    Comparison("CRU vs ResNet units", ("crunet_small", TIER3_BASE), ("preresnet_small", TIER3_BASE)),
    Comparison("ResNeXt vs ResNet units", ("preresnext_small", TIER3_BASE), ("preresnet_small", TIER3_BASE)),
    T3_DSFB_CIFAR_VS_RESNET,
    T3_DSFB_SHARED_ONLY_VS_RESNET,
    T3_DSFB_CIFAR_VS_RESNET_2E,
    T3_NONE_VS_CIFAR,
    T3_NONE_VS_SHARED_ONLY,
    Comparison("DSFB S16U1: shared-only vs the CIFAR-10 regularizer", (DSFB, TIER3_BASE), (DSFB, CIFAR_REGULARIZER)),
)

TIER3_RECIPE = f"{TIER3_EPOCHS} epochs, shifts, bf16"  # what every tier-3 cell changes from the 5-epoch recipe


@dataclass(frozen=True)
class Claim:
    """One of the papers' claims, read at 5 epochs (``short``, a comparison of tiers 1 and 2) and in tier 3
    (``long``: tier-3 comparisons, each with what it changes from the 5-epoch test: the recipe alone, at TIER3_EPOCHS
    or 2E, or the recipe and one of the authors' configurations), so that a reader sees which departure, if any,
    changes the verdict."""

    claim: str
    short: Comparison
    long: tuple[tuple[str, Comparison], ...]
    expects: str  # the candidate's reading the claim predicts: "better", "worse", or "equal" (no difference)


CLAIMS = (
    Claim("CRU-Net: at equal size, CRU units beat ResNeXt units", CRU_VS_RESNEXT,
          ((TIER3_RECIPE, T3_CRU_VS_RESNEXT),
           (f"{TIER3_RECIPE}, the released sharing pattern (last stage plain)", T3_RELEASED_VS_RESNEXT),
           (f"{2 * TIER3_EPOCHS} epochs (2E), shifts, bf16", T3_CRU_VS_RESNEXT_2E),
           (f"{2 * TIER3_EPOCHS} epochs (2E), shifts, bf16, the released sharing pattern", T3_RELEASED_VS_RESNEXT_2E)),
          "better"),
    Claim("DSFB: a shared basis matches the unshared ResNet-32", DSFB_VS_RESNET,
          ((TIER3_RECIPE, T3_DSFB_SHARED_ONLY_VS_RESNET),
           (f"{TIER3_RECIPE}, the CIFAR-10 regularizer", T3_DSFB_CIFAR_VS_RESNET),
           (f"{2 * TIER3_EPOCHS} epochs (2E), shifts, bf16, the CIFAR-10 regularizer", T3_DSFB_CIFAR_VS_RESNET_2E)),
          "equal"),
    Claim("DSFB: the orthogonality regularizer helps (no regularizer vs with)", DSFB_ABLATION,
          ((TIER3_RECIPE, T3_NONE_VS_SHARED_ONLY), (f"{TIER3_RECIPE}, the CIFAR-10 regularizer", T3_NONE_VS_CIFAR)),
          "worse"),
)


def short_difference(table: Table, c: Comparison, rates: dict[str, str]) -> tuple[tuple[str, str], Difference] | None:
    """A tiers-1-and-2 comparison: the two cells' rates (each at ``c``'s rate or its family's) and their
    difference; None while a cell has no run."""
    rate_a, rate_b = c.rates(rates)
    a, b = table.get((c.dataset, *c.candidate, rate_a)), table.get((c.dataset, *c.reference, rate_b))
    if not a or not b:
        return None
    return (rate_a, rate_b), difference(errors(a), errors(b), pooled_seed_sd(table, c.dataset))


def tier3_difference(table: Table, c: Comparison) -> tuple[tuple[str, str], Difference] | None:
    """A tier-3 comparison: the rates the two cells ran at and their difference; None while a cell has no run."""
    a, b = find(table, c.candidate, c.dataset), find(table, c.reference, c.dataset)
    if not a or not b:
        return None
    return (a[0], b[0]), difference(errors(a[1]), errors(b[1]), pooled_seed_sd(table, c.dataset))


def reading(d: Difference) -> str:
    """What a difference says of the candidate: resolved better or worse (the interval excludes 0), or not
    resolved."""
    if math.isnan(d.low):
        return "no interval yet"
    if d.high < 0:
        return "better, resolved"
    if d.low > 0:
        return "worse, resolved"
    return "not resolved"


def for_the_claim(expects: str, d: Difference) -> str:
    """What a reading says of a claim that predicts the candidate ``expects`` ("better", "worse" or "equal"): a
    resolved difference the predicted way supports it, the other way contradicts it; for "equal", any resolved
    difference contradicts it, and none leaves it "not contradicted" (an interval round 0 is not a proof of
    equality). "†" where the reading is (one run a side, the pooled sd)."""
    found = reading(d)
    if found == "no interval yet":
        return "-"
    if found == "not resolved":
        verdict = "not contradicted" if expects == "equal" else "not shown"
    else:
        verdict = "supported" if found.startswith(expects) else "contradicted"
    return verdict + (" †" if d.pooled else "")


def verdict_change(short: Difference, long: Difference) -> str:
    """Whether a claim's tier-3 reading (``long``) changes its 5-epoch one (``short``). A tier-3 interval that no
    longer excludes 0 but still holds the 5-epoch difference decides nothing: it is as consistent with the old gap as
    with none, so that is "undecided", not a change."""
    if long.pooled:
        return "not yet (one run a side)"
    before, after = reading(short), reading(long)
    if before == after:
        return "no"
    if after != "not resolved":
        return "yes: reversed" if before != "not resolved" else "yes: now resolved"
    if long.low <= short.value <= long.high:
        return f"undecided (this interval holds the 5-epoch {short.value:+.2f})"
    return f"yes: the gap closed (this interval excludes the 5-epoch {short.value:+.2f})"


def find(table: Table, cell: Cell, dataset: str = DATASET) -> tuple[str, list[Row]] | None:
    """The rate and runs of ``cell`` (model, option without its rate) at whichever rate it ran; a cell found at
    several is ambiguous: the one with the most runs (then the lowest rate) stands for it."""
    found = [(key[3], group) for key, group in table.items() if (key[0], key[1], key[2]) == (dataset, *cell)]
    if not found:
        return None
    return max(found, key=lambda item: (len(item[1]), -float(item[0])))


DOUBLED = {TIER3_BASE: TIER3_LONG, CIFAR_REGULARIZER: CIFAR_REGULARIZER_LONG}  # an option at E: the same at 2E


@dataclass(frozen=True)
class ConvergenceCheck:
    """A cell's test error at E (its seed-0 run and the cell) and at 2E (seed 0)."""

    cell: Cell  # (model, option at E without its rate)
    at_e: float  # seed 0's error at E
    cell_mean: float
    cell_sd: float
    cell_runs: int
    at_2e: float
    sd: float  # the seed-to-seed sd the difference is held against
    sd_source: str

    @property
    def difference(self) -> float:
        return self.at_2e - self.at_e


def convergence_checks(table: Table, fallback: tuple[float, int]) -> list[ConvergenceCheck]:
    """``convergence_check`` of every cell whose seed 0 has run at E and at 2E, CONVERGENCE_CHECK_MODEL's first."""
    cells_at_e = sorted({(model, option) for (dataset, model, option, _) in table
                         if dataset == DATASET and option in DOUBLED},
                        key=lambda c: (c[0] != CONVERGENCE_CHECK_MODEL, c))
    return [check for cell in cells_at_e if (check := convergence_check(table, fallback, cell))]


def convergence_check(table: Table, fallback: tuple[float, int],
                      cell: Cell = (CONVERGENCE_CHECK_MODEL, TIER3_BASE)) -> ConvergenceCheck | None:
    """The E-versus-2E check of ``cell`` (model, option at E) once both seed-0 runs have finished; the sd is the E
    cell's, or with one seed there the sd pooled over the tier-3 cells with 2 runs or more, or else ``fallback``
    (tiers 1 and 2's, with its df)."""
    model, option = cell
    at_e, at_2e = find(table, cell), find(table, (model, DOUBLED[option]))
    seed0 = [r for r in at_e[1] if r["seed"] == "0"] if at_e else []
    long0 = [r for r in at_2e[1] if r["seed"] == "0"] if at_2e else []
    if not seed0 or not long0:
        return None
    group = at_e[1]
    mean, sd = mean_std(errors(group))
    if len(group) > 1:
        used, source = sd, f"of the {len(group)} runs at {TIER3_EPOCHS} epochs"
    else:
        used, df = pooled_seed_sd(table, DATASET)
        source = f"pooled over the tier-3 cells, df {df}"
        if not df:
            used, df = fallback
            source = f"pooled over the tier-1 and tier-2 cells, df {df}"
    return ConvergenceCheck(cell, errors(seed0)[0], mean, sd, len(group), errors(long0)[0], used, source)
