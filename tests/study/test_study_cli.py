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


def test_report_without_results_is_one_line(tmp_path, capsys):
    assert main(["study", "report", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "crunet study run" in err
