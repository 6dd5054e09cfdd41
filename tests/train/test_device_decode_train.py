"""``crunet train --decode device`` on a small JPEG folder, on the CPU: it trains, validates and checkpoints as the
default ``--decode cpu`` does (torchvision needed: skipped where it does not import)."""

import csv
import math

import pytest

from crunet.cli.main import main
from crunet.train import load_checkpoint, train
from tests.helpers import jpeg_folders

# torchvision 0.29 deprecates its image decoders (for TorchCodec) with a warning at each call
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")


def test_a_short_run_with_device_decode_trains_and_checkpoints(cfg, tiny_model, tmp_path):
    pytest.importorskip("torchvision.io")
    cfg.data = str(jpeg_folders(tmp_path / "jpegs", classes=2, per_class=6))
    cfg.decode, cfg.epochs, cfg.batch_size, cfg.img_size, cfg.workers = "device", 2, 4, 24, 1
    model = tiny_model(num_classes=2, in_chans=3)
    model.pretrained_cfg = {**model.pretrained_cfg, "mean": (0.5,) * 3, "std": (0.25,) * 3}
    summary = train(cfg, model)
    rows = list(csv.DictReader(open(f"{cfg.out}/metrics.csv")))
    assert summary["steps"] == 6 and len(rows) == 2
    assert all(math.isfinite(float(r["train_loss"])) and math.isfinite(float(r["val_loss"])) for r in rows)
    assert summary["final_val"]["count"] == 12 and summary["final_val"]["skipped"] == 0
    state = load_checkpoint(f"{cfg.out}/last.pt")
    assert state["config"]["decode"] == "device" and state["img_size"] == 24


def test_decode_device_on_idx_data_is_one_line_before_anything_is_written(fmnist, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(fmnist), "--out", str(out), "--decode", "device", "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--decode device decodes image files" in err[0] and "IDX" in err[0], err
    assert not out.exists()
