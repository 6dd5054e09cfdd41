import errno
import os
import pickle
from fractions import Fraction

import pytest
import torch

from crunet.train import CheckpointError, load_checkpoint, save_checkpoint
from crunet.train.checkpoint import load_model_state


def test_roundtrip_and_no_temporary_file_left(tmp_path, tiny_model):
    model = tiny_model()
    path = save_checkpoint({"model": model.state_dict(), "epoch": 3, "rng": (1, (2, 3), None)}, tmp_path / "c.pt")
    state = load_checkpoint(path)
    assert state["epoch"] == 3
    torch.testing.assert_close(state["model"]["fc.weight"], model.fc.weight)
    assert sorted(os.listdir(tmp_path)) == ["c.pt"]


def test_write_goes_through_fsync_and_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1])
    save_checkpoint({"x": torch.ones(2)}, tmp_path / "c.pt")
    assert calls[:2] == ["fsync", "replace"]


def test_disk_full_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = save_checkpoint({"epoch": 1, "w": torch.ones(3)}, tmp_path / "last.pt")
    before = path.read_bytes()

    def full(obj, f, *a, **k):
        f.write(b"partial bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointError, match="disk full.*previous checkpoint.*intact"):
        save_checkpoint({"epoch": 2, "w": torch.zeros(3)}, path)
    assert path.read_bytes() == before and load_checkpoint(path)["epoch"] == 1
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]


def test_corrupt_truncated_and_foreign_files_are_clear_errors(tmp_path):
    path = save_checkpoint({"w": torch.randn(100)}, tmp_path / "c.pt")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt.*not a whole torch.save archive \\(200 bytes"):
        load_checkpoint(path)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="corrupt.*the file is empty$"):
        load_checkpoint(tmp_path / "empty.pt")
    (tmp_path / "text.pt").write_bytes(b"hello")  # torch's own message for this one is "101"
    with pytest.raises(CheckpointError, match="not a whole torch.save archive"):
        load_checkpoint(tmp_path / "text.pt")
    torch.save({"w": torch.ones(1), "f": Fraction(1, 3)}, tmp_path / "objects.pt")
    with pytest.raises(CheckpointError, match="Python objects besides tensors") as refused:
        load_checkpoint(tmp_path / "objects.pt")
    assert "weights_only=False" not in str(refused.value)  # never the advice to unpickle a stranger's file
    torch.save({"w": torch.ones(1)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a crunet training checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    from safetensors.torch import save_file

    save_file({"w": torch.ones(1)}, str(tmp_path / "weights.pt"))  # told by its bytes, whatever its name
    with pytest.raises(CheckpointError, match=r"is a safetensors weights file, not a crunet training checkpoint: "
                                              r"give the run's checkpoint \(RUN_DIR/best.pt"):
        load_checkpoint(tmp_path / "weights.pt")


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_never_unpickles_arbitrary_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"format": "crunet-checkpoint-v1", "x": Evil()}, f)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_weights_of_another_model_are_refused(tiny_model):
    small, other = tiny_model(num_classes=10), tiny_model(num_classes=7)
    with pytest.raises(CheckpointError, match="different model.*shape differs: fc.weight"):
        load_model_state(small, other.state_dict(), "x.pt", "tinynet")
    with pytest.raises(CheckpointError, match="missing: conv.weight"):
        load_model_state(small, {k: v for k, v in small.state_dict().items() if k != "conv.weight"}, "x.pt")
