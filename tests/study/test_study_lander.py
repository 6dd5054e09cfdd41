"""scripts/study-lander: each row that lands is committed with the regenerated report, results/ alone."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crunet.study.grid import tier3_option
from crunet.study.results_csv import append_row

ROOT = Path(__file__).resolve().parents[2]


def _row(seed: int) -> dict:
    option = tier3_option(20)
    return {"key": f"fashion-mnist/preresnet_small/{option}/seed{seed}", "dataset": "fashion-mnist",
            "model": "preresnet_small", "option": option, "seed": seed, "params": 1000, "macs": 2_000_000,
            "test_top1": 93.0 + seed / 10, "best_epoch": 20, "best_top1": 93.1, "final_epoch": 20,
            "train_seconds": 30.0}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.mark.slow
def test_a_landed_row_is_committed_with_its_report_and_nothing_else(tmp_path):
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "study-lander", repo / "scripts")
    append_row(repo / "results" / "tier3.csv", _row(0))
    (repo / "notes.txt").write_text("work in progress\n")
    (repo / "tests").mkdir()  # a README whose verdicts the new report no longer holds
    (repo / "tests" / "test_readme.py").write_text("def test_verdicts():\n    assert False\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "start")
    (repo / "notes.txt").write_text("staged, not the lander's\n")
    _git(repo, "add", "notes.txt")
    env = {**os.environ, "INTERVAL": "0.2", "PYTHON": sys.executable, "PYTHONPATH": str(ROOT),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    log = repo / "lander.log"
    with open(log, "w") as out:
        lander = subprocess.Popen([str(repo / "scripts" / "study-lander"), "tier3"], env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        time.sleep(1)  # it counts the rows there at its start
        append_row(repo / "results" / "tier3.csv", _row(1))
        deadline = time.time() + 120
        while "Study:" not in _git(repo, "log", "-1", "--format=%s") and time.time() < deadline:
            time.sleep(0.2)
        while "README.md is stale" not in log.read_text() and time.time() < deadline:
            time.sleep(0.2)
    finally:
        os.killpg(lander.pid, signal.SIGTERM)
        lander.wait(10)
    assert "README.md is stale: tests/test_readme.py fails" in log.read_text()
    assert _git(repo, "log", "-1", "--format=%s") == f"Study: {_row(1)['key']}\n"
    committed = set(_git(repo, "show", "--name-only", "--format=", "HEAD").split())
    assert {"results/tier3.csv", "results/results.md"} <= committed and all(p.startswith("results/") for p in committed)
    assert _row(1)["key"] in _git(repo, "show", "HEAD:results/tier3.csv")
    assert "## Tier 3" in _git(repo, "show", "HEAD:results/results.md")
    assert _git(repo, "diff", "--cached", "--name-only") == "notes.txt\n"  # still staged, not committed
