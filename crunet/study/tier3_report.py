"""The report's tier-3 section: the claims with the authors' configurations, trained ``TIER3_EPOCHS`` epochs, from
``tier3.csv`` alone (with ``epochs/`` for the plots). Each cell's last-epoch error (the verdict number) beside its
best-epoch one (what the DSFB authors report), the comparisons as named records, and the E-versus-2E check of
whether E epochs are long enough."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from crunet.study.grid import CONVERGENCE_CHECK_MODEL, TIER3_EPOCHS, parse_option, tier3_option
from crunet.study.report import _num, cells, checked_rows, comparison_row, errors, mean_std, pooled_seed_sd, split_rate

TIER3_FILE = "tier3.csv"
DATASET = "fashion-mnist"
BASE = tier3_option(TIER3_EPOCHS)  # every tier-3 option, less its rate, is this one plus at most one change
LONG = tier3_option(2 * TIER3_EPOCHS)  # the 2E run of CONVERGENCE_CHECK_MODEL
DSFB = "dsfb_resnet32_s16u1"
CIFAR_REGULARIZER = tier3_option(TIER3_EPOCHS, "orth_unique=1")
NO_REGULARIZER = tier3_option(TIER3_EPOCHS, "orth_lambda=0")
REGULARIZERS = {  # DSFB S16U1's three regularizer settings (option without the rate): their names in the report
    CIFAR_REGULARIZER: "CIFAR-10 regularizer (orth_unique=1)", BASE: "shared-only regularizer",
    NO_REGULARIZER: "no regularizer (orth_lambda=0)"}
PLOTS = {"tier3_convergence.png": "tier 3: test error against epoch (mean over seeds)",
         "tier3_grad_norms.png": "tier 3: gradient norm of DSFB's shared bases under each regularizer setting"}
ROW_REQUIRED = ("key", "model", "option", "seed", "params", "test_top1", "best_top1", "best_epoch")

Cell = tuple[str, str]  # (model, option without its rate)


@dataclass(frozen=True)
class Comparison:
    """One tier-3 question: the candidate cell's last-epoch error minus the reference's."""

    question: str
    candidate: Cell
    reference: Cell
    dataset: str = DATASET


COMPARISONS = (
    Comparison("CRU vs ResNeXt units at equal size", ("crunet_small", BASE), ("preresnext_small", BASE)),
    Comparison("Released-pattern CRU (last stage plain ResNeXt) vs ResNeXt", ("crunet_small_plain_last", BASE),
               ("preresnext_small", BASE)),
    Comparison("Released-pattern CRU vs CRU in every stage", ("crunet_small_plain_last", BASE),
               ("crunet_small", BASE)),
    Comparison("CRU vs ResNet units", ("crunet_small", BASE), ("preresnet_small", BASE)),
    Comparison("ResNeXt vs ResNet units", ("preresnext_small", BASE), ("preresnet_small", BASE)),
    Comparison("DSFB S16U1 (CIFAR-10 regularizer) vs its unshared ResNet-32", (DSFB, CIFAR_REGULARIZER),
               ("resnet32_cifar", BASE)),
    Comparison("DSFB S16U1 (shared-only regularizer) vs its unshared ResNet-32", (DSFB, BASE),
               ("resnet32_cifar", BASE)),
    Comparison("DSFB S16U1: no regularizer vs the CIFAR-10 one", (DSFB, NO_REGULARIZER), (DSFB, CIFAR_REGULARIZER)),
    Comparison("DSFB S16U1: shared-only vs the CIFAR-10 regularizer", (DSFB, BASE), (DSFB, CIFAR_REGULARIZER)),
)

Table = dict[tuple[str, str, str, str], list[dict[str, str]]]


def load_tier3(results: Path) -> list[dict[str, str]]:
    """tier3.csv's rows, refusing (by file and line) one that is torn or lacks what the section reads."""
    return checked_rows(Path(results) / TIER3_FILE, ROW_REQUIRED)


def find(table: Table, cell: Cell, dataset: str = DATASET) -> tuple[str, list[dict[str, str]]] | None:
    """The rate and runs of ``cell`` (model, option without its rate); tier 3 runs each family at one rate, so a cell
    found at several is ambiguous: the one with the most runs (then the lowest rate) stands for it."""
    found = [(key[3], group) for key, group in table.items() if (key[0], key[1], key[2]) == (dataset, *cell)]
    if not found:
        return None
    return max(found, key=lambda item: (len(item[1]), -float(item[0])))


def cell_label(model: str, option: str) -> str:
    """``crunet_small`` or ``dsfb_resnet32_s16u1 orth_lambda=0`` or ``preresnet_small 2E (40 epochs)``: the model and
    what its option changes from tier 3's recipe."""
    recipe, parts = parse_option(BASE), parse_option(option)
    changes = [f"{k}={v}" for k, v in parts.items() if recipe.get(k) != v and k != "epochs"]
    if parts.get("epochs", recipe["epochs"]) != recipe["epochs"]:
        epochs = int(parts["epochs"])
        factor = f"{epochs // TIER3_EPOCHS}E " if epochs % TIER3_EPOCHS == 0 else ""
        changes.insert(0, f"{factor}({epochs} epochs)")
    return " ".join([f"`{model}`", *changes])


def best_errors(group: list[dict[str, str]]) -> list[float]:
    return [100.0 - float(r["best_top1"]) for r in group]


def device_names(group: list[dict[str, str]]) -> str:
    return "; ".join(sorted({r.get("device") or "cpu" for r in group}))


def cell_table(table: Table) -> list[str]:
    lines = ["| model | option | lr | n | device | params | last-epoch test error % (mean ± sd) | "
             "best-epoch test error % (mean ± sd) | best epoch (mean) |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|"]
    for (_, model, option, rate), group in table.items():
        last, best = mean_std(errors(group)), mean_std(best_errors(group))
        best_epoch = statistics.fmean(int(r["best_epoch"]) for r in group)
        lines.append(f"| `{model}` | {option or '-'} | {rate} | {len(group)} | {device_names(group)} | "
                     f"{int(group[0]['params']):,} | {last[0]:.2f} ± {_num(last[1])} | "
                     f"{best[0]:.2f} ± {_num(best[1])} | {best_epoch:.1f} |")
    return lines


def comparison_table(table: Table) -> list[str]:
    lines = ["| question | candidate | reference | error difference (points) | 95% interval | sd of seeds | p | n |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for c in COMPARISONS:
        a, b = find(table, c.candidate, c.dataset), find(table, c.reference, c.dataset)
        if a and b:
            lead = f"{c.question} | {cell_label(*c.candidate)} lr {a[0]} | {cell_label(*c.reference)} lr {b[0]}"
            lines.append(comparison_row(lead, errors(a[1]), errors(b[1]), pooled_seed_sd(table, c.dataset)))
    return lines if len(lines) > 2 else []


@dataclass(frozen=True)
class ConvergenceCheck:
    """CONVERGENCE_CHECK_MODEL's test error at E (its seed-0 run and its cell) and at 2E (seed 0)."""

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

    def verdict(self) -> str:
        d, sd = self.difference, self.sd
        if math.isnan(sd):
            return (f"Doubling changes the error by {d:+.2f} points; no seed-to-seed sd to hold it against yet.")
        side = "more" if abs(d) > sd else "less" if abs(d) < sd else "as much as"
        then = (f"{TIER3_EPOCHS} epochs are not converged: the tier-3 errors belong to this training length."
                if abs(d) > sd else f"{TIER3_EPOCHS} epochs are long enough for these comparisons.")
        return (f"Doubling changes the error by {d:+.2f} points, {side} than the seed-to-seed sd {sd:.2f} "
                f"({self.sd_source}): {then}")


def convergence_check(table: Table, fallback: tuple[float, int]) -> ConvergenceCheck | None:
    """The E-versus-2E check once both seed-0 runs have finished; the sd is the E cell's, or with one seed there the
    sd pooled over the tier-3 cells with 2 runs or more, or else ``fallback`` (tiers 1 and 2's, with its df)."""
    at_e, at_2e = find(table, (CONVERGENCE_CHECK_MODEL, BASE)), find(table, (CONVERGENCE_CHECK_MODEL, LONG))
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
    return ConvergenceCheck(errors(seed0)[0], mean, sd, len(group), errors(long0)[0], used, source)


def convergence_lines(check: ConvergenceCheck | None) -> list[str]:
    if check is None:
        return [f"The E-versus-2E check (`{CONVERGENCE_CHECK_MODEL}` at {TIER3_EPOCHS} and {2 * TIER3_EPOCHS} epochs, "
                "seed 0) has not finished yet."]
    model = f"`{CONVERGENCE_CHECK_MODEL}`"
    return ["| run | epochs | test error % |", "|---|---:|---:|",
            f"| {model} seed 0 | {TIER3_EPOCHS} | {check.at_e:.2f} |",
            f"| {model}, mean ± sd of {check.cell_runs} seeds | {TIER3_EPOCHS} | "
            f"{check.cell_mean:.2f} ± {_num(check.cell_sd)} |",
            f"| {model} seed 0 | {2 * TIER3_EPOCHS} | {check.at_2e:.2f} |",
            f"| difference (2E minus E, seed 0) | | {check.difference:+.2f} |", "", check.verdict()]


def available_plots(rows: list[dict[str, str]]) -> dict[str, str]:
    """The tier-3 plots the rows can draw (file name: title)."""
    plots = {}
    if rows:
        plots["tier3_convergence.png"] = PLOTS["tier3_convergence.png"]
    if any(r["model"] == DSFB and split_rate(r["option"])[0] in REGULARIZERS for r in rows):
        plots["tier3_grad_norms.png"] = PLOTS["tier3_grad_norms.png"]
    return plots


def section(rows: list[dict[str, str]], fallback: tuple[float, int]) -> list[str]:
    """The tier-3 section's markdown lines (none without tier-3 rows); ``fallback``: the seed-to-seed sd and df of
    tiers 1 and 2, for a convergence check with one seed at E."""
    if not rows:
        return []
    table = cells(rows)
    out = ["", f"## Tier 3: the authors' configurations, {TIER3_EPOCHS} epochs", "",
           f"Every cell: {TIER3_EPOCHS} epochs, random shifts of up to 2 pixels with the flips, bf16 autocast, each "
           "family at its rate. The last-epoch error is our verdict number (no epoch is chosen on the test set); the "
           "best-epoch error, the lowest test error over the epochs, is what the DSFB authors report, and is "
           "optimistic by construction.", ""]
    out += cell_table(table)
    comparisons = comparison_table(table)
    if comparisons:
        out += ["", "### Tier-3 comparisons", "",
                "Last-epoch test error, read as the comparisons above (Welch's interval and p; † with the seed-to-seed "
                "sd pooled over the tier-3 cells with 2 runs or more).", ""] + comparisons
    out += ["", f"### Is {TIER3_EPOCHS} epochs enough? (E versus 2E)", ""]
    out += convergence_lines(convergence_check(table, fallback))
    plots = available_plots(rows)
    if plots:
        out += [""] + [f"![{title}]({name})\n" for name, title in plots.items()]
    return out


def write_plots(results: Path, rows: list[dict[str, str]]) -> list[Path]:
    """Draw the tier-3 plots the rows support and remove those they no longer do."""
    from crunet.study.plots import plot_tier3_convergence, plot_tier3_grad_norms

    drawers = {"tier3_convergence.png": plot_tier3_convergence, "tier3_grad_norms.png": plot_tier3_grad_norms}
    wanted, written = available_plots(rows), []
    for name, draw in drawers.items():
        if name in wanted and (path := draw(results, rows, results / name)):
            written.append(path)
        else:
            (results / name).unlink(missing_ok=True)
    return written
