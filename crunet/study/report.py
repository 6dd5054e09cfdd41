"""``crunet study report``: the study's tables and plots, regenerated from its CSVs alone.

The markdown is a pure function of the CSV rows (a test checks the committed one against them); the plots are drawn
from the same rows and the per-epoch metrics of each run.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections import defaultdict
from pathlib import Path

from crunet.study.grid import CLEARLY_BETTER, DEFAULT_LR, family_rates, parse_option, rate_of
from crunet.study.results_csv import STUDY_CSVS, epochs_file, read_rows

GRID_FILES = ("tier1.csv", "tier2.csv")  # the claims and the rest; lr-check.csv is the fairness check
COMPARISONS = (  # (question, data set, candidate, reference); a cell is (model, option, rate), None: the family's rate
    ("CRU vs ResNeXt units at equal size", "fashion-mnist", ("crunet_small", "", None), ("preresnext_small", "", None)),
    ("CRU vs ResNet units", "fashion-mnist", ("crunet_small", "", None), ("preresnet_small", "", None)),
    ("ResNeXt vs ResNet units", "fashion-mnist", ("preresnext_small", "", None), ("preresnet_small", "", None)),
    ("CRU vs ResNeXt units at equal size", "mnist", ("crunet_small", "", None), ("preresnext_small", "", None)),
    ("CRU vs ResNet units", "mnist", ("crunet_small", "", None), ("preresnet_small", "", None)),
    ("DSFB S16U1 vs its unshared ResNet-32", "fashion-mnist", ("dsfb_resnet32_s16u1", "", None),
     ("resnet32_cifar", "", None)),
    ("DSFB S16U1 without vs with the orthogonality regularizer", "fashion-mnist",
     ("dsfb_resnet32_s16u1", "orth_lambda=0", None), ("dsfb_resnet32_s16u1", "", None)),
    ("DSFB S8U1 vs its unshared ResNet-32", "fashion-mnist", ("dsfb_resnet32_s8u1", "", None),
     ("resnet32_cifar", "", None)),
    ("DSFB S16U1 Double vs its unshared ResNet-32", "fashion-mnist", ("dsfb_resnet32_s16u1_double", "", None),
     ("resnet32_cifar", "", None)),
    ("DSFB-56 S16U1 vs its unshared ResNet-56", "fashion-mnist", ("dsfb_resnet56_s16u1", "", None),
     ("resnet56_cifar", "", None)),
    ("DSFB S16U1 vs its unshared ResNet-32, both at half size", "fashion-mnist",
     ("dsfb_resnet32_s16u1", "size=0.5", None), ("resnet32_cifar", "size=0.5", None)),
    ("DSFB S16U1 vs its unshared ResNet-32, both at double size", "fashion-mnist",
     ("dsfb_resnet32_s16u1", "size=2", None), ("resnet32_cifar", "size=2", None)),
    ("Sharing vs thinning at about equal size: DSFB S16U1 vs ResNet-32 at half size", "fashion-mnist",
     ("dsfb_resnet32_s16u1", "", None), ("resnet32_cifar", "size=0.5", None)),
    ("CRU vs ResNeXt units at half size", "fashion-mnist", ("crunet_small", "size=0.5", None),
     ("preresnext_small", "size=0.5", None)),
    ("CRU vs ResNeXt units at double size", "fashion-mnist", ("crunet_small", "size=2", None),
     ("preresnext_small", "size=2", None)),
    ("bf16 vs float32 autocast (crunet_small)", "fashion-mnist", ("crunet_small", "amp=bf16", DEFAULT_LR),
     ("crunet_small", "", DEFAULT_LR)),
)
FAMILIES = {  # curves of the Pareto plot: a base model and its size=0.5 / size=2 variants
    "preresnext_small": "ResNeXt (pre-act, small)", "crunet_small": "CRU-Net (small)",
    "resnet32_cifar": "ResNet-32", "dsfb_resnet32_s16u1": "DSFB ResNet-32 S16U1",
}
SIZE_OPTIONS = ("size=0.5", "", "size=2")


def load(results: Path) -> list[dict[str, str]]:
    rows = []
    for name in GRID_FILES:
        rows += checked_rows(results / name)
    return rows


NUMERIC_COLUMNS = {"seed": int, "params": int, "macs": int, "test_top1": float, "best_epoch": int, "best_top1": float,
                   "train_seconds": float, "images_per_s": float, "cpu_share": float}


def checked_rows(path: Path, required: tuple[str, ...] = ("key", "test_top1")) -> list[dict[str, str]]:
    """The rows of a study CSV (as ``read_rows`` gives them), refusing a malformed or torn one: a record whose field
    count is not the header's, a ``required`` column left empty, or a number that does not parse. The error names the
    file and the line, so no report is drawn from a half-written row."""
    path = Path(path)
    if not path.is_file():
        return []
    _check_records(path, lambda record: _study_problem(record, required))
    return read_rows(path)


def _study_problem(record: dict[str, str], required: tuple[str, ...]) -> str | None:
    empty = [c for c in required if not record.get(c)]
    if empty:
        return f"empty {', '.join(empty)}"
    for column, kind in NUMERIC_COLUMNS.items():
        if record.get(column) and _unparsed(record[column], kind):
            return f"{column}={record[column]!r} is not a number"
    if not 0 <= float(record["test_top1"]) <= 100:
        return f"test_top1={record['test_top1']} is not a percentage"
    return None


def _check_records(path: Path, problem) -> None:
    """Raise ``ValueError("<path>:<line>: ...")`` at the first record with another field count than the header or
    for which ``problem(record)`` says what is wrong."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        for fields in reader:
            if not fields:  # a blank line: csv.DictReader skips it too
                continue
            if len(fields) != len(header):
                raise ValueError(f"{path}:{reader.line_num}: malformed or torn row ({len(fields)} fields, the header "
                                 f"has {len(header)}); not reporting on it")
            if reason := problem(dict(zip(header, fields, strict=True))):
                raise ValueError(f"{path}:{reader.line_num}: malformed row ({reason}); not reporting on it")


def _unparsed(value: str, kind: type) -> bool:
    try:
        kind(value)
    except ValueError:
        return True
    return False


def cells(rows: list[dict[str, str]]) -> dict[tuple[str, str, str, str], list[dict[str, str]]]:
    """Runs grouped by (data set, model, option without its rate, learning rate)."""
    grouped: dict[tuple[str, str, str, str], list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        grouped[(row["dataset"], row["model"], *split_rate(row["option"]))].append(row)
    return dict(sorted(grouped.items()))


def split_rate(option: str) -> tuple[str, str]:
    """``"lr=0.4,size=2"`` -> ``("size=2", "0.4")``; an option without a rate ran at the default one."""
    parts = parse_option(option)
    rate = parts.pop("lr", DEFAULT_LR)
    return ",".join(f"{k}={v}" for k, v in parts.items()), rate


def at_family_rates(rows: list[dict[str, str]], rates: dict[str, str]) -> list[dict[str, str]]:
    """The runs at their family's rate, with the rate taken out of the option: what the size and ablation plots
    draw."""
    out = []
    for row in rows:
        option, rate = split_rate(row["option"])
        if rate == (rate_of(row["model"], rates) or DEFAULT_LR):
            out.append({**row, "option": option})
    return out


def resolve(cell: tuple[str, str, str | None], rates: dict[str, str]) -> tuple[str, str, str]:
    """A comparison's (model, option, rate) with rate None made the family's rate (the default while unknown)."""
    model, option, rate = cell
    return model, option, rate or rate_of(model, rates) or DEFAULT_LR


def errors(group: list[dict[str, str]]) -> list[float]:
    return [100.0 - float(r["test_top1"]) for r in group]


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else math.nan)


def welch(a: list[float], b: list[float]) -> tuple[float, float]:
    """Welch's t statistic and two-sided p-value (unequal variances); NaN when a side has fewer than 2 runs."""
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    from scipy import stats

    result = stats.ttest_ind(a, b, equal_var=False)
    return float(result.statistic), float(result.pvalue)


def difference_interval(a: list[float], b: list[float], level: float = 0.95) -> tuple[float, float]:
    """Welch's confidence interval of mean(a) - mean(b); NaN when a side has fewer than 2 runs."""
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    from scipy import stats

    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(level)
    return float(ci.low), float(ci.high)


def pooled_seed_sd(table: dict[tuple[str, str, str, str], list[dict[str, str]]], dataset: str) -> tuple[float, int]:
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


def pooled_test(a: list[float], b: list[float], sd: float, df: int, level: float = 0.95) -> tuple[float, float, float]:
    """Student's interval of mean(a) - mean(b) and its two-sided p, with a seed-to-seed ``sd`` estimated elsewhere
    (``df`` degrees of freedom): what a comparison with one run on a side can say."""
    if df == 0:
        return math.nan, math.nan, math.nan
    from scipy import stats

    diff = statistics.fmean(a) - statistics.fmean(b)
    scale = sd * math.sqrt(1 / len(a) + 1 / len(b))
    half = float(stats.t.ppf((1 + level) / 2, df)) * scale
    return diff - half, diff + half, float(2 * stats.t.sf(abs(diff) / scale, df))


def results_table(rows: list[dict[str, str]]) -> list[str]:
    lines = ["| data set | model | option | lr | n | test error % (mean ± sd) | params | MMACs | train s/run | img/s | "
             "cpu share |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (dataset, model, option, rate), group in cells(rows).items():
        m, s = mean_std(errors(group))
        cpu = [r for r in group if on_cpu(r)]  # seconds on a GPU are another axis: not averaged in
        secs = _num(statistics.fmean(float(r["train_seconds"]) for r in cpu), 0) if cpu else "-"
        ips = _num(statistics.fmean(float(r["images_per_s"]) for r in cpu), 0) if cpu else "-"
        shares = [float(r["cpu_share"]) for r in cpu if r.get("cpu_share")]
        share = _num(statistics.fmean(shares)) if shares else "-"
        lines.append(f"| {dataset} | `{model}` | {option or '-'} | {rate} | {len(group)} | {m:.2f} ± {_num(s)} | "
                     f"{int(group[0]['params']):,} | {int(group[0]['macs']) / 1e6:.1f} | {secs} | {ips} | "
                     f"{share} |")
    return lines


def comparison_table(rows: list[dict[str, str]], rates: dict[str, str]) -> list[str]:
    lines = ["| question | data set | candidate | reference | error difference (points) | 95% interval | "
             "sd of seeds | p | n |", "|---|---|---|---|---:|---:|---:|---:|---|"]
    table = cells(rows)
    for question, dataset, cand, ref in COMPARISONS:
        cand, ref = resolve(cand, rates), resolve(ref, rates)
        a, b = table.get((dataset, *cand)), table.get((dataset, *ref))
        if not a or not b:
            continue
        lines.append(comparison_row(f"{question} | {dataset} | {_label(cand)} | {_label(ref)}", errors(a), errors(b),
                                    pooled_seed_sd(table, dataset)))
    return lines


def comparison_row(lead: str, ea: list[float], eb: list[float], pooled: tuple[float, int]) -> str:
    """A comparison table's row: ``lead`` (its first columns), then the difference of the mean errors ``ea`` minus
    ``eb``, Welch's interval, the sd of seeds, p and the run counts; with one run on a side, Student's with the
    ``pooled`` seed-to-seed sd and its degrees of freedom, marked †."""
    if len(ea) > 1 and len(eb) > 1:
        _, p = welch(ea, eb)
        low, high = difference_interval(ea, eb)
        spread, mark = _num(max(mean_std(ea)[1], mean_std(eb)[1])), ""
    else:  # one run on a side has no spread of its own
        sd, df = pooled
        low, high, p = pooled_test(ea, eb, sd, df)
        spread, mark = f"{_num(sd)} pooled (df {df})", " †"
    interval = "-" if math.isnan(low) else f"{low:+.2f} to {high:+.2f}{mark}"
    return (f"| {lead} | {statistics.fmean(ea) - statistics.fmean(eb):+.2f} | {interval} | {spread} | "
            f"{_num(p, 3)}{mark if not math.isnan(p) else ''} | {len(ea)} vs {len(eb)} |")


def lr_table(rows: list[dict[str, str]]) -> list[str]:
    if not rows:
        return []
    lrs = sorted({_option_value(r["option"], "lr") for r in rows}, key=float)
    lines = ["| model | " + " | ".join(f"lr {lr}" for lr in lrs) + " | best |",
             "|---|" + "---:|" * (len(lrs) + 1)]
    by_model: dict[str, dict[str, float]] = defaultdict(dict)
    for r in rows:
        by_model[r["model"]][_option_value(r["option"], "lr")] = float(r["test_top1"])
    for model, scores in by_model.items():
        best = max(scores, key=scores.get)
        cols = " | ".join(f"{scores[lr]:.2f}" if lr in scores else "" for lr in lrs)
        lines.append(f"| `{model}` | {cols} | {best} |")
    return lines


def render_markdown(results: Path) -> str:
    from crunet.study.tier3_report import load_tier3

    return _markdown(load(results), checked_rows(results / "lr-check.csv"), family_rates(results),
                     load_tier3(results))


def _markdown(rows: list[dict[str, str]], lr_rows: list[dict[str, str]], rates: dict[str, str],
              tier3_rows: list[dict[str, str]] = ()) -> str:
    out = ["# Study results", "",
           "Generated by `crunet study report` from the CSVs in this folder; do not edit by hand. Test error is "
           "100 - top-1 on the test set after the last epoch (no epoch is chosen on the test set).", "",
           "## Comparisons", "",
           "Difference = candidate minus reference in mean test error (negative: the candidate is better); the 95% "
           "interval of that difference and p are Welch's (two-sided t-test over seeds, unequal variances). With 3 "
           "seeds a side the interval is wide: a difference is resolved only when it excludes 0. † A side with one "
           "run has no spread of its own: its interval and p are Student's with the seed-to-seed sd pooled over every "
           "cell of that data set with 2 runs or more, which assumes sharing and width change the error's mean but "
           "not how much it varies with the seed; read them as indications.", ""]
    out += comparison_table(rows, rates) + ["", "## All runs", ""] + results_table(rows)
    if lr_rows:
        chosen = ", ".join(f"`{m}` {r}" for m, r in rates.items()) or "none yet"
        out += ["", "## Learning-rate check", "",
                f"Top-1 % on {lr_rows[0]['option'].split('holdout=')[-1]} images held out of the training set "
                "(one seed; the test set is not used).", ""] + lr_table(lr_rows)
        out += ["", f"Rates the claims use (the default {DEFAULT_LR} unless another beat it by more than "
                f"{CLEARLY_BETTER} points): {chosen}."]
    out += ["", "Train seconds and images/s are as measured in the grid, on the CPU (runs on a GPU, if any, count "
            "in the errors but not in the times); `cpu share` (CPU over wall seconds per thread) near 1 means the run "
            "had its core to itself, lower means other work slowed it and its time is not a measurement.", ""]
    plots = available_plots(rows, rates)
    if plots:
        out += ["## Plots", ""] + [f"![{title}]({name})\n" for name, title in plots.items()]
    if tier3_rows:  # none: the report is the tiers-1-and-2 one, unchanged
        from crunet.study.tier3_report import section

        out += section(list(tier3_rows), pooled_seed_sd(cells(rows), "fashion-mnist"))
    return "\n".join(out)


def available_plots(rows: list[dict[str, str]], rates: dict[str, str]) -> dict[str, str]:
    """The plots the rows can draw (file name: title), in the order the report shows them."""
    fm = [r for r in rows if r["dataset"] == "fashion-mnist"]
    claims = at_family_rates(fm, rates)
    plots = {}
    if any(r["model"] in FAMILIES and r["option"] in SIZE_OPTIONS for r in claims):
        plots["error_vs_params.png"] = "test error against parameters"
    if any(timed(r) for r in fm):
        plots["error_vs_time.png"] = "test error against training time (runs that had their cores to themselves)"
    if any(r["model"] == "dsfb_resnet32_s16u1" and r["option"] in ("", "orth_lambda=0") for r in claims):
        plots["ablation_grad_norms.png"] = "gradient norm of the shared bases"
    return plots


def write_report(results: Path) -> list[Path]:
    results = Path(results)
    if not any((results / n).is_file() for n in STUDY_CSVS):
        raise FileNotFoundError(f"{results}: no study CSVs ({', '.join(STUDY_CSVS)}); run "
                                "`crunet study run GRID` first")
    from crunet.study.tier3_report import load_tier3, write_plots

    rows, rates, tier3_rows = load(results), family_rates(results), load_tier3(results)
    md = results / "results.md"
    md.write_text(_markdown(rows, checked_rows(results / "lr-check.csv"), rates, tier3_rows))
    claims = at_family_rates(rows, rates)
    written = [md]
    from crunet.study.plots import plot_ablation, plot_error_vs_params, plot_error_vs_time

    drawers = {"error_vs_params.png": lambda path: plot_error_vs_params(claims, path),
               "error_vs_time.png": lambda path: plot_error_vs_time(rows, path),
               "ablation_grad_norms.png": lambda path: plot_ablation(results, claims, path)}
    wanted = available_plots(rows, rates)
    for name, draw in drawers.items():
        if name in wanted and (path := draw(results / name)):
            written.append(path)
        else:
            (results / name).unlink(missing_ok=True)  # a plot the rows no longer support must not linger
    return written + write_plots(results, tier3_rows)


MEASURED_CPU_SHARE = 0.9  # below it another process slowed the run: its time is not a measurement


def on_cpu(row: dict[str, str]) -> bool:
    return row.get("device", "") in ("", "cpu")  # "": a row from before the column, all of them CPU runs


def timed(row: dict[str, str]) -> bool:
    """A CPU run that had its core to itself: its time is a measurement."""
    return on_cpu(row) and bool(row.get("cpu_share")) and float(row["cpu_share"]) >= MEASURED_CPU_SHARE


def epoch_metrics(results: Path, key: str) -> list[dict[str, str]]:
    """A run's per-epoch metrics (none when its file is absent), refusing a malformed or torn line by file and line."""
    path = results / "epochs" / epochs_file(key)
    if not path.is_file():
        return []
    _check_records(path, _epoch_problem)
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _epoch_problem(record: dict[str, str]) -> str | None:
    if _unparsed(record.get("epoch", ""), int):
        return f"epoch={record.get('epoch')!r} is not an epoch"
    for column, value in record.items():
        if (column == "val_top1" or column.startswith("grad_") or column == "orth_penalty") and value \
                and _unparsed(value, float):
            return f"{column}={value!r} is not a number"
    return None


def _label(cell: tuple[str, str, str]) -> str:
    return f"`{cell[0]}`" + (f" {cell[1]}" if cell[1] else "") + f" lr {cell[2]}"


def _option_value(option: str, name: str) -> str:
    return dict(p.split("=", 1) for p in option.split(",") if "=" in p).get(name, "")


def _num(x: float, digits: int = 2) -> str:
    return "-" if math.isnan(x) else f"{x:.{digits}f}"
