"""The papers' tables as study grids: their rows, the source's recipe knob for knob in each run, shortening, the data
check, and the report beside the published numbers (from a tiny CIFAR fixture end to end)."""

from dataclasses import replace
from pathlib import Path

import pytest

from crunet.analysis.published_results import PUBLISHED
from crunet.cli.main import main
from crunet.study.paper_grids import PAPER_GRIDS
from crunet.study.paper_report import REPORTED, paper_markdown, present_paper_grids, write_paper_report
from crunet.study.results_csv import append_row, read_rows
from crunet.study.runner import GridPaths, run_grid
from crunet.study.worker import run_one
from tests.data.cifar_files import write_cifar_set

REPO = Path(__file__).resolve().parents[2]
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@pytest.fixture(scope="module")
def cifar10(tmp_path_factory):
    return str(write_cifar_set(tmp_path_factory.mktemp("c10"), n_train=24, n_test=8).path)


@pytest.fixture(scope="module")
def cifar100(tmp_path_factory):
    return str(write_cifar_set(tmp_path_factory.mktemp("c100"), "cifar100", n_train=24, n_test=8).path)


def test_each_grid_is_its_published_table_at_one_seed():
    for name, grid in PAPER_GRIDS.items():
        runs = grid.runs()
        assert [r.model for r in runs] == [p.model for p in PUBLISHED[name].rows] == list(grid.models)
        assert {r.key for r in runs} == {f"{grid.dataset}/{m}/-/seed0" for m in grid.models}
    assert len(PAPER_GRIDS["dsfb-cifar10"].runs(seeds=2)) == 16


def test_a_dsfb_cifar10_run_is_the_source_recipe_knob_for_knob(cifar10, tmp_path):
    grid = PAPER_GRIDS["dsfb-cifar10"]
    recipe = grid.recipe(cifar10)
    for run in grid.runs():
        cfg = run.train_config(recipe, str(tmp_path))
        assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.momentum, cfg.nesterov) == (300, 256, 0.1, 0.9, False)
        assert (cfg.weight_decay, cfg.decay_norm_and_bias, cfg.label_smoothing, cfg.warmup_epochs) == (
            5e-4, True, 0.0, 0.0)
        assert (cfg.schedule, cfg.step_epochs, cfg.gamma, cfg.pad, cfg.augment) == ("step", [150, 225], 0.1, 4, "light")
        assert (cfg.mean, cfg.std, cfg.data) == (IMAGENET_MEAN, IMAGENET_STD, cifar10)  # as the source normalizes
        dsfb = run.model.startswith("dsfb")
        # the source's CIFAR-10 regularizer (the unique filters too), not the study's shared-only default
        assert cfg.model_kwargs == ({"orth_lambda": 10.0, "orth_unique": True} if dsfb else {})


def test_a_dsfb_cifar100_run_has_its_normalization_and_the_shared_only_regularizer(cifar100, tmp_path):
    grid = PAPER_GRIDS["dsfb-cifar100"]
    cfg = grid.runs()[0].train_config(grid.recipe(cifar100), str(tmp_path))
    assert (cfg.mean, cfg.std) == ([0.507, 0.487, 0.441], [0.267, 0.256, 0.276])
    assert cfg.model_kwargs == {"orth_lambda": 10.0, "orth_unique": False}


def test_shortened_runs_say_so_in_their_key_and_scale_the_milestones(cifar10, tmp_path):
    grid = PAPER_GRIDS["dsfb-cifar10"]
    run = grid.runs(epochs=60, subset=512)[0]
    assert run.key == "cifar10/resnet32_cifar/epochs=60,subset=512/seed0"
    cfg = run.train_config(grid.recipe(cifar10), str(tmp_path))
    assert (cfg.epochs, cfg.step_epochs, cfg.subset) == (60, [30, 45], 512)
    assert grid.runs(epochs=300)[0].option == ""  # the full length is no shortening


@pytest.mark.parametrize("argv, message", [
    ([], "grid dsfb-cifar10 needs --data DIR"),
    (["--data", "FMNIST"], "holds fashion-mnist data; grid dsfb-cifar10 trains on cifar10"),
    (["--data", "CIFAR10", "--epochs", "301"], "--epochs 301: grid dsfb-cifar10 trains 300 epochs"),
    (["--data", "CIFAR10", "--subset", "100"], "--subset 100: recipe dsfb-cifar trains batches of 256 images"),
])
def test_a_wrong_data_folder_or_length_is_one_line(argv, message, tmp_path, fmnist, cifar10, capsys):
    argv = [{"FMNIST": str(fmnist), "CIFAR10": cifar10}.get(a, a) for a in argv]
    assert main(["study", "run", "dsfb-cifar10", "--results", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())  # nothing written


def test_committed_paper_reports_are_the_reports_of_the_committed_csvs():
    results = REPO / "results"
    grids = present_paper_grids(results)
    if not grids:
        pytest.skip("no paper grid run committed yet")
    for name in grids:
        rows = read_rows(results / f"{name}.csv", REPORTED)
        assert (results / f"{name}.md").read_text() == paper_markdown(PAPER_GRIDS[name], rows)


def _row(key: str, model: str, option: str, top1: float, best: float, best_epoch: int, params: int) -> dict:
    return {"key": key, "dataset": "cifar10", "model": model, "option": option, "seed": 0, "params": params,
            "test_top1": top1, "best_top1": best, "best_epoch": best_epoch, "final_epoch": 300}


def test_report_puts_each_row_beside_its_published_error_and_marks_shortened_runs(tmp_path):
    append_row(tmp_path / "dsfb-cifar10.csv",
               _row("cifar10/resnet32_cifar/-/seed0", "resnet32_cifar", "", 92.0, 92.5, 280, 464_154))
    append_row(tmp_path / "dsfb-cifar10.csv", _row("cifar10/dsfb_resnet32_s8u1/epochs=1/seed0", "dsfb_resnet32_s8u1",
                                                   "epochs=1", 40.0, 40.0, 1, 151_082))
    text = write_paper_report(tmp_path, "dsfb-cifar10").read_text()
    lines = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    # ours 8.00 last, 7.50 at the best epoch (280) against the paper's 7.51: +0.49 and -0.01
    assert "| 8.00 | 7.50 (280) | 7.51 | +0.49 | -0.01 |" in lines["ResNet-32"]
    assert "0.464 M | 0.46 M" in lines["ResNet-32"]
    assert "epochs=1 (not comparable)" in lines["ResNet32-S8U1"]
    assert lines["ResNet32-S8U1"].endswith("| 8.08 | not comparable | not comparable |")
    assert "not run yet" in lines["ResNet56-S16U1*"] and "6.30" in lines["ResNet56-S16U1*"]
    assert "chosen on the test set" in text and "Not comparable: runs shortened to `epochs=1`" in text


def test_report_command_writes_the_paper_reports_present(tmp_path, capsys):
    append_row(tmp_path / "dsfb-cifar100.csv",
               {**_row("cifar100/dsfb_resnet34_cifar100_s8u1/-/seed0", "dsfb_resnet34_cifar100_s8u1", "", 77.0,
                       77.2, 250, 5_865_428), "dataset": "cifar100"})
    assert main(["study", "report", "--results", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"wrote {tmp_path / 'dsfb-cifar100.md'}\n"
    assert "| 23.00 | 22.80 (250) | 23.11 | -0.11 | -0.31 |" in (tmp_path / "dsfb-cifar100.md").read_text()
    assert not (tmp_path / "results.md").exists()  # no study CSVs here: only the paper grid's report


def _shortened(cifar10: str):
    grid = PAPER_GRIDS["dsfb-cifar10"]
    recipe = replace(grid.recipe(cifar10), settings={"batch_size": 8, "workers": 0})  # 2 steps on 16 images
    return grid, recipe, grid.runs(epochs=1, subset=16, models={"dsfb_resnet32_s8u1"})


def _check_recorded_and_reported(results, grid) -> None:
    (row,) = read_rows(results / f"{grid.name}.csv")
    assert row["key"] == "cifar10/dsfb_resnet32_s8u1/epochs=1,subset=16/seed0" and row["final_epoch"] == "1"
    assert float(row["lr"]) == 0.1 and int(row["params"]) == 150_666  # 10 classes, read from the CIFAR files
    text = write_paper_report(results, grid.name).read_text()
    line = next(li for li in text.splitlines() if li.startswith("| ResNet32-S8U1 |"))
    assert "epochs=1,subset=16 (not comparable)" in line and "| 8.08 |" in line


def test_a_shortened_run_on_cifar_files_is_recorded_and_reported_beside_the_published(cifar10, tmp_path):
    grid, recipe, (spec,) = _shortened(cifar10)
    results = tmp_path / "results"
    run_one(spec, recipe, results / f"{grid.name}.csv", tmp_path / "runs", results / "epochs", 1, 1)
    _check_recorded_and_reported(results, grid)


@pytest.mark.slow
def test_the_shortened_grid_runs_through_the_runner(cifar10, tmp_path):
    grid, recipe, specs = _shortened(cifar10)
    paths = GridPaths.of(grid.name, tmp_path / "results", tmp_path / "runs")
    counts = run_grid(specs, paths, threads=1, recipes={grid.dataset: recipe}, say=lambda _: None)
    assert counts["finished"] == 1
    _check_recorded_and_reported(tmp_path / "results", grid)


@pytest.mark.slow
def test_a_row_trained_outside_the_grid_into_its_run_directory_is_recorded_not_trained_again(cifar10, tmp_path):
    # how a row is trained on several GPUs (torchrun ... crunet train --out <its run directory>): docs/reproducing.md
    grid, recipe, (spec,) = _shortened(cifar10)
    runs, results = tmp_path / "runs", tmp_path / "results"
    argv = ["train", "--recipe", grid.training, "--model", spec.model, "--data", cifar10, "--epochs", "1",
            "--subset", "16", "--batch-size", "8", "--workers", "0", "--out", str(runs / spec.key), "--progress",
            "none", "--no-tensorboard", "--no-plot", "--log-shared-grads"]
    assert main(argv) == 0
    run_one(spec, recipe, results / f"{grid.name}.csv", runs, results / "epochs", 1, 1)
    assert not (runs / spec.key / "sittings.txt").exists()  # the worker found it finished: it only recorded it
    _check_recorded_and_reported(results, grid)


@pytest.mark.slow
def test_a_run_of_two_processes_under_torchrun_is_trained_by_both_and_recorded_once(cifar10, tmp_path):
    grid, recipe, specs = _shortened(cifar10)
    paths = GridPaths.of(grid.name, tmp_path / "results", tmp_path / "runs")
    counts = run_grid(specs, paths, threads=1, recipes={grid.dataset: recipe}, say=lambda _: None, nproc=2)
    assert counts["finished"] == 1
    _check_recorded_and_reported(tmp_path / "results", grid)
    log = (paths.runs / (specs[0].key + ".log")).read_text()
    assert "2 process(es), global batch 16" in log  # two ranks of 8 images: the 16 images in one step


def test_merge_adds_another_machines_paper_grid_rows(tmp_path, capsys):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    row = _row("cifar10/resnet32_cifar/-/seed0", "resnet32_cifar", "", 92.0, 92.5, 280, 464_154)
    append_row(theirs / "dsfb-cifar10.csv", row)
    assert main(["study", "merge", str(theirs), "--results", str(ours)]) == 0
    assert "dsfb-cifar10.csv: 1 run(s) added" in capsys.readouterr().out
    assert [r["key"] for r in read_rows(ours / "dsfb-cifar10.csv")] == [row["key"]]
