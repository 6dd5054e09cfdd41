"""scripts/gpu-check, the one call a GPU session makes: without CUDA it refuses in one line naming the dry run, and its
CPU dry run completes every part and writes each result file, so that the script cannot rot between GPU sessions."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu-check"
PARTS = ("tests", "bench-train-eager", "bench-infer-eager", "loader", "train", "bench-train-compile-crunet_small")


def _gpu_check(*args: str, timeout: int = 60, **env_vars: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, **env_vars}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for a machine without CUDA")
def test_without_cuda_it_refuses_in_one_line_naming_the_dry_run(tmp_path):
    done = _gpu_check(str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "CUDA is not available" in done.stderr and "--dry-run" in done.stderr
    assert not (tmp_path / "out" / "gpu-check.log").exists()  # refused before any part ran


def test_bad_arguments_print_the_usage(tmp_path):
    for args in ((), ("--bogus", str(tmp_path)), (str(tmp_path / "a"), str(tmp_path / "b"))):
        done = _gpu_check(*args)
        assert done.returncode == 2 and done.stderr.startswith("usage: scripts/gpu-check"), args


@pytest.mark.slow
def test_the_cpu_dry_run_passes_every_part_and_writes_each_result(tmp_path, fmnist):
    # The look-alike data set, not data/fashion-mnist: a fresh clone (CI's) has no downloaded data.
    out = tmp_path / "out"
    done = _gpu_check("--dry-run", str(out), timeout=1600, DATA=str(fmnist))  # above the dry run's budget
    log = (out / "gpu-check.log").read_text()
    assert done.returncode == 0, log[-3000:]
    for part in PARTS:
        assert f"part {part}: ok in" in log, part
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["bench.json", "bench.md", "gpu-check.log", "loader.json", "tests.txt", "train.json", "train.tar.gz"])
    bench = json.loads((out / "bench.json").read_text())
    cases = {(r["model"], r["mode"], r["variant"]) for r in bench["rows"]}
    assert {("crunet_small", "train", "eager"), ("crunet_small", "infer", "eager"),
            ("preresnet_small", "train", "eager"), ("crunet_small", "train", "compile")} <= cases
    assert all(r["img_s"] > 0 for r in bench["rows"])
    train = json.loads((out / "train.json").read_text())
    assert train["ok"] and train["problems"] == [] and train["torchrun"]["world"] == 1
    assert " passed" in (out / "tests.txt").read_text()
    assert json.loads((out / "loader.json").read_text())["rows"]
