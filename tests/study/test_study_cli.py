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


def test_claims_of_families_whose_check_finished_can_start_alone(tmp_path, capsys, record_lr):
    for lr, top1 in (("0.1", 92.0), ("0.2", 92.5), ("0.4", 92.4)):
        record_lr(tmp_path, "preresnet_small", lr, top1)
    argv = ["study", "run", "tier1", "--dry-run", "--results", str(tmp_path)]
    assert main(argv + ["--model", "preresnet_small"]) == 0
    todo = capsys.readouterr().out.split("\n")[:-1]
    assert todo[0] == "todo fashion-mnist/preresnet_small/-/seed0" and len(todo) == 5  # 3 seeds + 2 on MNIST
    assert main(argv + ["--model", "crunet_small"]) == 2  # its check has not run
    assert "not finished for crunet_small" in capsys.readouterr().err
