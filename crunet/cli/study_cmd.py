"""``crunet study``: run a grid of training runs (resumable), list it, or regenerate the report from its CSVs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from crunet.cli.main import CliError

if TYPE_CHECKING:
    from crunet.study.grid import RunSpec


def add_parser(subparsers) -> None:
    from crunet.study.grid import GRIDS
    from crunet.study.paper_grids import PAPER_GRIDS
    from crunet.study.runner import RESULTS_DIR, RUNS_DIR

    names = sorted(GRIDS) + sorted(PAPER_GRIDS)  # the study's grids, then the papers' tables

    p = subparsers.add_parser("study", help="run the study grids and regenerate their report",
                              description="Grids of runs testing the papers' claims; results in results/.")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="run a grid; finished runs are skipped, interrupted ones resumed")
    run.add_argument("grid", choices=names)
    run.add_argument("--workers", type=_positive, default=1, help="runs side by side (default 1)")
    run.add_argument("--threads", type=_positive, default=None,
                     help="threads per process (default: cores / (workers x nproc))")
    run.add_argument("--nproc", type=_positive, default=1, metavar="N",
                     help="processes per run, through torchrun: one per GPU (default 1)")
    _results_argument(run, RESULTS_DIR)
    run.add_argument("--runs", default=RUNS_DIR, help=f"run directories and logs (default {RUNS_DIR}/)")
    _filter_arguments(run)
    run.add_argument("--data", action="append", metavar="NAME=DIR",
                     help="where a data set's IDX files are, e.g. fashion-mnist=data/fashion-mnist (repeatable; "
                          "default: fashion-mnist from the Debian package, mnist in data/mnist); a paper grid "
                          f"({', '.join(sorted(PAPER_GRIDS))}) takes its data folder or archive: --data DIR")
    run.add_argument("--seeds", type=_seed_count, default=None, metavar="N",
                     help="run every cell of the grid at seeds 0..N-1 at least (default: the grid's own counts)")
    run.add_argument("--whole-cells", action="store_true",
                     help="only cells none of whose runs is recorded yet, so that each cell stays on one device "
                          "(a GPU session beside the CPUs' grid)")
    run.add_argument("--dry-run", action="store_true", help="list what would run, run nothing")
    _shortening_arguments(run)
    run.set_defaults(func=run_cmd)
    show = sub.add_parser("list", help="list a grid's runs: done, running, stopped part-way, or to do")
    show.add_argument("grid", choices=names)
    _results_argument(show, RESULTS_DIR)
    show.add_argument("--runs", default=RUNS_DIR, help=f"the grid's run directories (default {RUNS_DIR}/)")
    _filter_arguments(show)
    _shortening_arguments(show)
    show.set_defaults(func=list_cmd)
    merge = sub.add_parser("merge", help="add the runs of another results folder (another machine's) to ours")
    merge.add_argument("other", help="the other results folder (its grid CSVs and epochs/)")
    _results_argument(merge, RESULTS_DIR)
    merge.set_defaults(func=merge_cmd)
    report = sub.add_parser("report", help="regenerate results.md and the plots from the CSVs")
    report.add_argument("grid", nargs="?", choices=sorted(PAPER_GRIDS),
                        help="only this paper grid's report (default: results.md and every paper grid's present)")
    _results_argument(report, RESULTS_DIR)
    report.set_defaults(func=report_cmd)


def _filter_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", help="only these models (repeatable)")
    parser.add_argument("--dataset", action="append", help="only these data sets (repeatable)")
    parser.add_argument("--option", action="append", help="only runs with this option, '-' for none (repeatable)")


def _shortening_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=_positive, default=None, metavar="N",
                        help="paper grids: train N epochs, the step milestones scaled in proportion (a smoke test: "
                             "its rows are marked not comparable)")
    parser.add_argument("--subset", type=_positive, default=None, metavar="N",
                        help="paper grids: train on N training images (a smoke test, as --epochs)")


def _results_argument(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--results", default=default, help=f"folder of the committed CSVs (default {default}/)")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number, 1 or more, got {text!r}")
    return int(text)


def _selected(args: argparse.Namespace):
    from crunet.study.grid import grid, with_seeds
    from crunet.study.paper_grids import PAPER_GRIDS, check_subset
    from crunet.study.results_csv import LR_CHECK, grid_csv
    from crunet.study.runner import GridPaths

    models = set(getattr(args, "model", None) or []) or None
    check = grid_csv(args.results, LR_CHECK)
    paper = PAPER_GRIDS.get(args.grid)
    if paper is None and (args.epochs or args.subset):
        raise CliError(f"--epochs and --subset shorten a paper grid ({', '.join(PAPER_GRIDS)}); grid {args.grid} "
                       "takes its lengths from its options")
    if paper is None and args.grid != LR_CHECK and not check.is_file():
        raise CliError(f"no learning-rate check in {args.results}/ ({check} does not exist), and grid {args.grid} "
                       "runs each family at the rate it chose: pass --results with the folder that holds it (the "
                       "repository's results/), or run `crunet study run lr-check` there first")
    if paper:
        check_subset(paper, args.subset)
    specs = (paper.runs(1, args.epochs, args.subset, models) if paper else
             grid(args.grid, Path(args.results), models))
    unknown = sorted((models or set()) - {s.model for s in specs})
    if unknown:
        raise CliError(f"--model {', '.join(unknown)} is not in grid {args.grid}")
    for flag, field in (("dataset", "dataset"), ("option", "option")):
        wanted = getattr(args, flag, None)
        if not wanted:
            continue
        wanted = {"" if w == "-" else w for w in wanted}
        unknown = sorted(wanted - {getattr(s, field) for s in specs})
        if unknown:
            raise CliError(f"--{flag} {', '.join(w or '-' for w in unknown)} is not in grid {args.grid}")
        specs = [s for s in specs if getattr(s, field) in wanted]
    if getattr(args, "seeds", None):
        if args.grid == LR_CHECK:
            raise CliError("--seeds: the learning-rate check runs one seed per rate by design; give --seeds to tier1 "
                           "or tier2")
        specs = with_seeds(specs, args.seeds)
    if getattr(args, "whole_cells", False):
        specs = untouched_cells(specs, GridPaths.of(args.grid, args.results).csv)
    return specs


def untouched_cells(specs: list[RunSpec], csv_path: Path) -> list[RunSpec]:
    """The runs of the cells (data set, model, option) none of whose runs ``csv_path`` records."""
    from crunet.study.results_csv import done_keys

    done = done_keys(csv_path)
    touched = {(s.dataset, s.model, s.option) for s in specs if s.key in done}
    return [s for s in specs if (s.dataset, s.model, s.option) not in touched]


def _seed_count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of seeds, 1 or more, got {text!r}")
    return int(text)


def run_cmd(args: argparse.Namespace) -> int:
    from crunet.study.paper_grids import PAPER_GRIDS
    from crunet.study.results_csv import done_keys
    from crunet.study.runner import GridPaths, run_grid

    paths = GridPaths.of(args.grid, args.results, args.runs)
    specs = _selected(args)
    paper = PAPER_GRIDS.get(args.grid)
    if paper and paper.processes > args.nproc:
        print(f"grid {paper.name}: the published runs used {paper.processes} GPUs or more; --nproc {paper.processes} "
              f"trains each run on {paper.processes} (torchrun), this command on {args.nproc}")
    if args.dry_run:
        done = done_keys(paths.csv)
        for s in specs:
            print(("done " if s.key in done else "todo ") + s.key)
        return 0
    counts = run_grid(specs, paths, workers=args.workers, threads=args.threads, recipes=_recipes(args.data, args.grid),
                      nproc=args.nproc)
    elsewhere = f", {counts['elsewhere']} left to another grid process" if counts["elsewhere"] else ""
    stopped = f", {counts['stopped']} stopped by a signal (the next run resumes them)" if counts["stopped"] else ""
    print(f"grid {args.grid}: {counts['finished']} finished, {counts['failed']} failed{stopped}, {counts['skipped']} "
          f"already done{elsewhere}; results in {paths.csv}")
    return 1 if counts["failed"] else 0


def _recipes(places: list[str] | None, grid: str | None = None):
    """The recipes with the data folders given by ``--data NAME=DIR`` (the runs' keys do not change); a paper grid's
    with its one data folder, ``--data DIR``."""
    from dataclasses import replace

    from crunet.study.grid import RECIPES
    from crunet.study.paper_grids import PAPER_GRIDS

    if grid in PAPER_GRIDS:
        paper = PAPER_GRIDS[grid]
        if len(places or []) > 1:
            raise CliError(f"grid {grid} trains on one data set: give one --data DIR")
        data = (places or [None])[0]
        data = data.partition("=")[2] if data and data.startswith(f"{paper.dataset}=") else data
        paper.check_data(data)
        return {paper.dataset: paper.recipe(data)}
    recipes = dict(RECIPES)
    for place in places or []:
        name, sep, folder = place.partition("=")
        if not sep or not folder:
            raise CliError(f"--data {place}: expected NAME=DIR, e.g. fashion-mnist=data/fashion-mnist")
        if name not in recipes:
            raise CliError(f"--data {place}: no data set {name!r} in the study; known: {', '.join(recipes)}")
        recipes[name] = replace(recipes[name], data=folder)
    return recipes


def list_cmd(args: argparse.Namespace) -> int:
    from collections import Counter

    from crunet.study.progress import run_state
    from crunet.study.results_csv import done_keys
    from crunet.study.runner import GridPaths

    paths = GridPaths.of(args.grid, args.results, args.runs)
    done, states = done_keys(paths.csv), Counter()
    for spec in _selected(args):
        state = run_state(spec, paths.runs, done)
        states[state.kind] += 1
        print(f"{spec.key}: {state.text}")
    print(f"grid {args.grid}: " + ", ".join(f"{n} {state}" for state, n in states.items()))
    return 0


def merge_cmd(args: argparse.Namespace) -> int:
    from crunet.study.paper_grids import PAPER_GRIDS
    from crunet.study.results_csv import STUDY_CSVS, merge_results

    added = merge_results(Path(args.other), Path(args.results), STUDY_CSVS + tuple(f"{g}.csv" for g in PAPER_GRIDS))
    for name, n in added.items():
        print(f"{name}: {n} run(s) added")
    if not added:
        raise CliError(f"{args.other} holds no study CSVs ({', '.join(STUDY_CSVS)})")
    return 0


def report_cmd(args: argparse.Namespace) -> int:
    from crunet.study.paper_report import present_paper_grids, write_paper_report
    from crunet.study.report import write_report
    from crunet.study.results_csv import STUDY_CSVS

    results = Path(args.results)
    papers = [args.grid] if args.grid else present_paper_grids(results)
    study = not args.grid and (not papers or any((results / n).is_file() for n in STUDY_CSVS))
    for path in (write_report(results) if study else []) + [write_paper_report(results, g) for g in papers]:
        print(f"wrote {path}")
    return 0
