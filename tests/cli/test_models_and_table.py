import json
import math

import pytest

from crunet.analysis.paper_tables import paper_table_rows
from crunet.cli.main import main


def test_models_lists_params_mib_and_macs(capsys):
    assert main(["models", "crunet5*"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["model", "params", "MiB", "GMACs", "input"]
    row = dict(zip(out[0].split(), out[1].split(), strict=True))
    assert row["model"] == "crunet56" and row["params"] == "25,609,384" and row["GMACs"] == "5.634"


def test_models_with_no_match_prints_one_line_and_fails(capsys):
    assert main(["models", "nothing*"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no model matches 'nothing*'" in err[0]


@pytest.mark.slow
def test_table_formats(capsys):
    assert main(["table", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["table"] for r in rows} >= {"1", "2", "3", "4", "5"}
    assert main(["table", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("table,method,setting,model")
    assert main(["table"]) == 0
    assert capsys.readouterr().out.startswith("| table | method")


def test_table_one_params_agree_with_the_paper_to_its_rounding():
    for row in paper_table_rows():
        if row["table"] == "1" and row["model"] != "crunet56":
            assert abs(row["params_m"] - row["paper_params_m"]) < 0.06, row  # the paper truncates 25.553 to 25.5
    crunet56 = next(r for r in paper_table_rows() if r["model"] == "crunet56" and r["table"] == "1")
    assert crunet56["params_m"] == 25.609  # width 640 (released code) against the paper's 624


def test_the_papers_model_size_is_the_checkpoint_size_rounded_up():
    # The authors' own models: parameters + BN statistics, in MiB, rounded up. ResNet-101/200 are quoted from
    # He et al. and are the parameters alone.
    for row in paper_table_rows():
        if row["paper_size_mb"] is None:
            continue
        if row["model"] in ("preresnet101", "preresnet200"):
            assert round(row["size_mib"]) == row["paper_size_mb"], row
        else:
            assert math.ceil(row["ckpt_mib"]) == row["paper_size_mb"], row
