from crunet.cli.main import main


def test_filters_select_runs_and_name_what_is_not_in_the_grid(checked_rates, capsys):
    argv = ["study", "run", "tier2", "--model", "crunet_small", "--option", "amp=bf16", "--dry-run", "--results",
            str(checked_rates)]
    assert main(argv) == 0
    assert capsys.readouterr().out.split("\n")[:-1] == [
        f"todo fashion-mnist/crunet_small/amp=bf16/seed{s}" for s in range(3)]
    assert main(["study", "run", "tier1", "--dataset", "cifar10", "--dry-run", "--results", str(checked_rates)]) == 2
    assert "--dataset cifar10 is not in grid tier1" in capsys.readouterr().err


def test_claims_before_the_learning_rate_check_is_one_line(tmp_path, capsys):
    assert main(["study", "run", "tier1", "--dry-run", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "crunet study run lr-check" in err


def test_a_results_folder_without_the_check_is_named_with_the_fix(tmp_path, capsys):
    # as from outside the repository, where results/ is not the study's folder
    for command in ("run", "list"):
        assert main(["study", command, "tier3", "--results", str(tmp_path / "results")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"no learning-rate check in {tmp_path / 'results'}/" in err
        assert "pass --results with the folder that holds it" in err


def test_report_without_results_is_one_line(tmp_path, capsys):
    assert main(["study", "report", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "crunet study run" in err


def test_a_torn_results_csv_is_one_line_naming_file_and_line(tmp_path, capsys):
    (tmp_path / "tier1.csv").write_text("key,test_top1\nfashion-mnist/x/-/seed0,93.1\nfashion-mnist/x/-/seed1\n")
    assert main(["study", "report", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tier1.csv:3: malformed or torn row" in err


def test_claims_of_families_whose_check_finished_can_start_alone(tmp_path, capsys, record_lr):
    for lr, top1 in (("0.1", 92.0), ("0.2", 92.5), ("0.4", 92.4)):
        record_lr(tmp_path, "preresnet_small", lr, top1)
    argv = ["study", "run", "tier1", "--dry-run", "--results", str(tmp_path)]
    assert main(argv + ["--model", "preresnet_small"]) == 0
    todo = capsys.readouterr().out.split("\n")[:-1]
    assert todo[0] == "todo fashion-mnist/preresnet_small/-/seed0" and len(todo) == 5  # 3 seeds + 2 on MNIST
    assert main(argv + ["--model", "crunet_small"]) == 2  # its check has not run
    assert "not finished for crunet_small" in capsys.readouterr().err


def test_data_folders_are_given_per_data_set(tmp_path, capsys, monkeypatch, fmnist):
    import crunet.study.runner

    seen = {}
    monkeypatch.setattr(crunet.study.runner, "run_grid",
                        lambda specs, paths, recipes, **_: seen.update(recipes) or {"finished": 0, "failed": 0,
                                                                                  "stopped": 0, "skipped": 0,
                                                                                  "elsewhere": 0})
    argv = ["study", "run", "lr-check", "--results", str(tmp_path)]
    assert main(argv + ["--data", f"fashion-mnist={fmnist}"]) == 0
    assert seen["fashion-mnist"].data == str(fmnist) and seen["fashion-mnist"].epochs == 5
    assert seen["mnist"].data == "data/mnist"  # the others keep their place
    for bad, message in (("fashion-mnist", "expected NAME=DIR"), ("cifar10=data/c", "no data set 'cifar10'")):
        assert main(argv + ["--data", bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err


def test_merge_adds_the_runs_of_another_results_folder_once(tmp_path, capsys):
    from crunet.study.results_csv import append_row, read_rows

    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    append_row(ours / "tier1.csv", {"key": "a", "test_top1": 90.0})
    append_row(theirs / "tier1.csv", {"key": "a", "test_top1": 91.0, "device": "cuda:0 (NVIDIA H200)"})
    append_row(theirs / "tier1.csv", {"key": "fashion-mnist/x/-/seed0", "test_top1": 92.0, "device": "cuda:0"})
    (theirs / "epochs").mkdir()
    (theirs / "epochs" / "fashion-mnist__x__-__seed0.csv").write_text("epoch\n1\n")
    argv = ["study", "merge", str(theirs), "--results", str(ours)]
    assert main(argv) == 0 and "tier1.csv: 1 run(s) added" in capsys.readouterr().out
    rows = read_rows(ours / "tier1.csv")
    assert [(r["key"], r["test_top1"], r["device"]) for r in rows] == [("a", "90", ""),  # ours kept
                                                                    ("fashion-mnist/x/-/seed0", "92", "cuda:0")]
    assert (ours / "epochs" / "fashion-mnist__x__-__seed0.csv").read_text() == "epoch\n1\n"
    assert main(argv) == 0 and "tier1.csv: 0 run(s) added" in capsys.readouterr().out  # merging again adds nothing
    assert main(["study", "merge", str(tmp_path / "empty"), "--results", str(ours)]) == 2
    assert "holds no study CSVs" in capsys.readouterr().err


def test_seeds_give_every_selected_cell_more_runs_seed_major(checked_rates, capsys):
    argv = ["study", "run", "tier2", "--dry-run", "--results", str(checked_rates)]
    assert main(argv + ["--model", "preresnext_small", "--seeds", "2"]) == 0
    assert capsys.readouterr().out.split("\n")[:-1] == [
        f"todo fashion-mnist/preresnext_small/{option}/seed{seed}"
        for seed in (0, 1) for option in ("size=0.5", "size=2")]
    assert main(argv + ["--option", "amp=bf16", "--seeds", "2"]) == 0
    assert len(capsys.readouterr().out.split("\n")[:-1]) == 3  # never fewer than the grid's own count
    assert main(["study", "run", "lr-check", "--seeds", "2", "--dry-run", "--results", str(checked_rates)]) == 2
    assert "one seed per rate" in capsys.readouterr().err


def test_a_seed_count_below_one_is_refused_by_name(checked_rates, capsys):
    try:
        code = main(["study", "run", "tier2", "--seeds", "0", "--dry-run", "--results", str(checked_rates)])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2 and "expected a whole number of seeds, 1 or more, got '0'" in capsys.readouterr().err


def test_whole_cells_leaves_out_every_cell_with_a_recorded_run(checked_rates, capsys):
    from crunet.study.results_csv import append_row

    argv = ["study", "run", "tier2", "--model", "crunet_small", "--dry-run", "--results", str(checked_rates)]
    append_row(checked_rates / "tier2.csv", {"key": "fashion-mnist/crunet_small/amp=bf16/seed1",
                                             "model": "crunet_small"})  # one seed of the bf16 cell, elsewhere
    assert main(argv) == 0
    everything = capsys.readouterr().out.split("\n")[:-1]
    assert "done fashion-mnist/crunet_small/amp=bf16/seed1" in everything
    assert main(argv + ["--whole-cells"]) == 0
    whole = capsys.readouterr().out.split("\n")[:-1]
    assert whole and not any("/amp=bf16/" in line for line in whole)  # the touched cell, all its seeds
    assert whole == [line for line in everything if "/amp=bf16/" not in line]
