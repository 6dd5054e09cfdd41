"""The study's figures (matplotlib, imported here only): error against size and time, and the gradient flow of the
shared bases with and without DSFB's orthogonality regularizer; tier 3's convergence, its comparisons' gaps and its
regularizer settings. Drawn from the cells of ``cells.py`` and the per-epoch series of ``epoch_series.py``."""

from __future__ import annotations

import statistics
from pathlib import Path

from crunet.study.cells import (
    CLAIMS,
    DSFB,
    FAMILIES,
    MEASURED_CPU_SHARE,
    REGULARIZERS,
    SIZE_OPTIONS,
    TIER3_COMPARISONS,
    cell_label,
    cells,
    errors,
    timed,
)
from crunet.study.epoch_series import (
    PENALTY,
    comparison_gaps,
    gradient_series,
    logged_columns,
    mean_error_by_epoch,
    tier3_regularizer_gradients,
)
from crunet.study.grid import TIER3_EPOCHS
from crunet.study.seed_stats import mean_std


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


Point = tuple[int, float, float]  # parameters, mean and sd of the test error
Curves = dict[str, tuple[list[int], list[float]]]  # label: (epochs, values)
# the panels of tier 3's plots
CRU_CELLS = "CRU-Net's claim: CRU, ResNeXt and ResNet units"
DSFB_CELLS = "DSFB's claims: S16U1 and its unshared ResNet-32"
OTHER_COMPARISONS = "the other comparisons (no claim of the papers)"
AT_2E = f"at 2E ({2 * TIER3_EPOCHS} epochs)"  # the 2E runs' panel, or the suffix of a claim's 2E panel


def _save(fig, path: Path, crop_to_contents: bool = False) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110, **({"bbox_inches": "tight"} if crop_to_contents else {}))
    _pyplot().close(fig)
    return path


def size_points(rows: list[dict[str, str]], dataset: str = "fashion-mnist") -> tuple[dict[str, list[Point]],
                                                                                       dict[str, Point]]:
    """The error-against-parameters view: each family's curve over its sizes (size=0.5, 1, 2) and one point for
    every other model (``rows``: one rate per model, as ``at_family_rates`` gives)."""
    table = {key[:3]: group for key, group in cells(rows).items() if key[0] == dataset}
    curves = {family: sorted(_point(g) for o in SIZE_OPTIONS if (g := table.get((dataset, model, o))))
              for model, family in FAMILIES.items()}
    singles = {model: _point(g) for (_, model, option), g in table.items() if not option and model not in FAMILIES}
    return {f: c for f, c in curves.items() if c}, singles


def _point(group: list[dict[str, str]]) -> Point:
    return int(group[0]["params"]), *mean_std(errors(group))


def plot_error_vs_params(rows: list[dict[str, str]], path: Path, dataset: str = "fashion-mnist") -> Path | None:
    curves, singles = size_points(rows, dataset)
    if not curves:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for family, points in curves.items():
        x, y, s = zip(*points, strict=True)
        ax.errorbar(x, y, yerr=[0 if v != v else v for v in s], marker="o", capsize=3, label=family)
    for model, (params, m, s) in singles.items():
        ax.errorbar([params], [m], yerr=[0 if s != s else s], marker="s", linestyle="none", capsize=3, label=model)
    ax.set(xscale="log", xlabel="parameters", ylabel="test error % (mean ± sd over seeds)",
           title=f"{dataset}: test error against size\n(curves: size=0.5, 1, 2; squares: other models)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


OPTION_MARKERS = {"": "o", "size=0.5": "v", "size=2": "^", "orth_lambda=0": "X", "amp=bf16": "D"}


def plot_error_vs_time(rows: list[dict[str, str]], path: Path, dataset: str = "fashion-mnist") -> Path | None:
    table = {k: [r for r in g if timed(r)] for k, g in cells(rows).items() if k[0] == dataset}
    table = {k: g for k, g in table.items() if g}
    if not table:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 4.5))
    models = sorted({model for _, model, _, _ in table})
    colours = plt.get_cmap("tab10" if len(models) <= 10 else "tab20")
    for (_, model, option, rate), group in table.items():  # a colour per model, a marker per option
        secs = statistics.fmean(float(r["train_seconds"]) for r in group)
        m, s = mean_std(errors(group))
        ax.errorbar([secs], [m], yerr=[0 if s != s else s], marker=OPTION_MARKERS.get(option, "P"), capsize=3,
                    color=colours(models.index(model)), label=model + (f" {option}" if option else "") + f" lr {rate}")
    ax.set(xlabel=f"training seconds per run (runs with cpu share >= {MEASURED_CPU_SHARE})", ylabel="test error %",
           title=f"{dataset}: test error against training time")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path)


def plot_ablation(results: Path, rows: list[dict[str, str]], path: Path, model: str = "dsfb_resnet32_s16u1",
                  dataset: str = "fashion-mnist") -> Path | None:
    """Mean gradient norm of each stage's shared basis per epoch, averaged over seeds, with and without the
    regularizer (``rows``: the runs at the family's rate, options without it); the orthogonality penalty beside
    it."""
    def labelled():
        for row in rows:
            if row["dataset"] == dataset and row["model"] == model and row["option"] in ("", "orth_lambda=0"):
                yield ("orth_lambda=0" if row["option"] else "orth_lambda=10 (default)"), row

    series = gradient_series(results, labelled())
    if not series:
        return None
    plt = _pyplot()
    fig, (ax_grad, ax_orth) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {column: f"C{i}" for i, column in enumerate(sorted({c for _, c in series}))}  # a stage: one colour
    for (label, column), by_epoch in sorted(series.items()):
        epochs = sorted(by_epoch)
        values = [statistics.fmean(by_epoch[e]) for e in epochs]
        ax = ax_orth if column == PENALTY else ax_grad
        name = column.removeprefix("grad_").replace(".shared.0.weights.0", "")
        ax.plot(epochs, values, marker="o", linestyle="--" if "=0" in label else "-", color=colors[column],
                label=f"{name}, {label}" if ax is ax_grad else label)
    ax_grad.set(yscale="log", xlabel="epoch", ylabel="mean gradient norm per step (mean over seeds)",
                title=f"{model}: shared-basis gradients")
    ax_orth.set(yscale="log", xlabel="epoch", ylabel="||B B^T - I||^2 / n^2", title="orthogonality penalty")
    for ax in (ax_grad, ax_orth):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_tier3_convergence(results: Path, rows: list[dict[str, str]], path: Path) -> Path | None:
    """Test error (100 - val_top1) against epoch, averaged over seeds, one line per tier-3 cell, in the panels of
    ``convergence_panels``."""
    if not (panels := convergence_panels(results, rows)):
        return None

    def log_scale(ax) -> None:
        from matplotlib.ticker import MaxNLocator, ScalarFormatter

        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(ScalarFormatter())

    return _lines_by_epoch(panels, path, "test error % (mean over seeds)", "tier 3: test error against epoch",
                           log_scale)


def convergence_panels(results: Path, rows: list[dict[str, str]]) -> dict[str, Curves]:
    """Each tier-3 cell's mean test error by epoch: the CRU claim's cells in one panel, DSFB's in another, the 2E
    runs in a third, on an epoch axis of their own; a panel with no logged cell is left out."""
    panels: dict[str, Curves] = {CRU_CELLS: {}, DSFB_CELLS: {}}
    for (_, model, option, rate), group in cells(rows).items():
        if by_epoch := mean_error_by_epoch(results, group):
            epochs = sorted(by_epoch)
            panel = (AT_2E if epochs[-1] > TIER3_EPOCHS else
                     DSFB_CELLS if model in (DSFB, "resnet32_cifar") else CRU_CELLS)
            label = f"{cell_label(model, option).replace('`', '')} lr {rate} (n={len(group)})"
            panels.setdefault(panel, {})[label] = (epochs, [by_epoch[e] for e in epochs])
    return {panel: curves for panel, curves in panels.items() if curves}


def _lines_by_epoch(panels: dict[str, Curves], path: Path, ylabel: str, title: str, scale) -> Path:
    """One line per curve against epoch, in one panel per entry of ``panels`` (its title: its curves), each on an
    epoch axis of its own, three to a row; ``scale(ax)`` sets the y axis, shared by all. One panel has its legend
    beside it; several have one each, below."""
    plt = _pyplot()
    if len(panels) == 1:
        fig, ax = plt.subplots(figsize=(9.5, 4.8))
        _draw_lines(ax, next(iter(panels.values())), scale)
        ax.set(ylabel=ylabel)
        ax.set_title(title, loc="left")  # a long legend narrows the axes: centred, it would run off the left
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        return _save(fig, path)
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    longest = max(len(group) for group in panels.values())
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, (3.4 + 0.16 * longest) * rows), squeeze=False,
                             sharey=True, layout="constrained")
    for ax, (panel, group) in zip(axes.flat, panels.items(), strict=False):  # a last row may have empty slots
        _draw_lines(ax, group, scale)
        ax.set_title(panel, fontsize=9)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel(ylabel)
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _draw_lines(ax, curves: Curves, scale) -> None:
    colours = _pyplot().get_cmap("tab10" if len(curves) <= 10 else "tab20")
    for i, (label, (epochs, values)) in enumerate(curves.items()):
        ax.plot(epochs, values, marker=".", color=colours(i), label=label)
    scale(ax)
    ax.set(xlabel="epoch")
    ax.grid(True, which="both", alpha=0.3)


def plot_tier3_gaps(results: Path, rows: list[dict[str, str]], path: Path) -> Path | None:
    """Each tier-3 comparison's gap against epoch: the candidate cell's mean test error minus the reference's, at
    the epochs both logged. The convergence plot's scale hides gaps of a tenth of a point; here one can see whether
    each closes, opens or holds. Linear within 1 point of 0, logarithmic beyond (the high-rate epochs swing by tens)."""
    if not (panels := gap_panels(results, rows)):
        return None

    def symlog_about_0(ax) -> None:
        from matplotlib.ticker import MaxNLocator, ScalarFormatter

        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_formatter(ScalarFormatter())

    return _lines_by_epoch(panels, path, "error gap, points (candidate - reference)",
                           "tier 3: each comparison's gap against epoch (mean over seeds)", symlog_about_0)


def gap_panels(results: Path, rows: list[dict[str, str]]) -> dict[str, Curves]:
    """The tier-3 comparisons' gaps (``comparison_gaps``) in one panel per claim they read (``CLAIMS``), the rest in
    one of their own. Those at 2E get a panel beside their claim's, since on one epoch axis they would squeeze the
    20-epoch lines into its left half."""
    claim_of = {c: claim.claim for claim in CLAIMS for _, c in claim.long}
    panels: dict[str, Curves] = {name: {} for claim in CLAIMS for name in (claim.claim, _at_2e(claim.claim))}
    for c in TIER3_COMPARISONS:
        for label, gap in comparison_gaps(results, rows, (c,)).items():
            panel = claim_of.get(c, OTHER_COMPARISONS)
            panels.setdefault(_at_2e(panel) if max(gap[0]) > TIER3_EPOCHS else panel, {})[label] = gap
    return {panel: group for panel, group in panels.items() if group}


def _at_2e(panel: str) -> str:
    return f"{panel}, {AT_2E}"


def plot_tier3_grad_norms(results: Path, rows: list[dict[str, str]], path: Path) -> Path | None:
    """DSFB S16U1 under its three regularizer settings: one panel per shared tensor (its mean gradient norm per
    epoch, averaged over seeds) and one for the orthogonality penalty, if logged. The claim under test: without the
    regularizer the shared bases' gradients drift further epoch after epoch."""
    series = tier3_regularizer_gradients(results, rows)
    if not series:
        return None
    columns = logged_columns(series)
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 4.2), squeeze=False)
    colours = {name: f"C{i}" for i, name in enumerate(REGULARIZERS.values())}
    for ax, column in zip(axes[0], columns, strict=True):
        for name, colour in colours.items():
            if by_epoch := series.get((name, column)):
                epochs = sorted(by_epoch)
                ax.plot(epochs, [statistics.fmean(by_epoch[e]) for e in epochs], marker=".", color=colour, label=name)
        title = ("orthogonality penalty ||B B^T - I||^2 / n^2" if column == PENALTY else
                 column.removeprefix("grad_").replace(".shared.0.weights.0", " shared basis"))
        ax.set(yscale="log", xlabel="epoch", title=title,
               ylabel="penalty (mean over seeds)" if column == PENALTY else "mean gradient norm per step")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{DSFB}, tier 3: shared-basis gradients under each regularizer setting", fontsize=10)
    return _save(fig, path)
