import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "get-fashion-mnist"
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz")


def run(tmp_path, data_dir):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir(exist_ok=True)
    for name, script in (("id", "echo 1000"), ("sudo", "exit 1")):  # not root, and sudo refuses
        (fake_bin / name).write_text(f"#!/bin/sh\n{script}\n")
        (fake_bin / name).chmod(0o755)
    env = {**os.environ, "FASHION_MNIST_DIR": str(data_dir), "PATH": f"{fake_bin}:/usr/bin:/bin"}
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def test_present_files_need_nothing(tmp_path):
    for name in FILES:
        (tmp_path / name).write_bytes(b"")
    result = run(tmp_path, tmp_path)
    assert result.returncode == 0 and "Fashion-MNIST is in" in result.stdout


def test_without_rights_it_explains_what_to_do(tmp_path):
    result = run(tmp_path, tmp_path / "missing")
    assert result.returncode == 1
    assert "apt-get install dataset-fashion-mnist" in result.stderr and "--data" in result.stderr
