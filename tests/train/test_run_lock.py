"""One writer per run directory: a second ``train`` into a directory another live process is writing is refused at
once, with one line naming the holder (pid, host); the lock dies with its holder, so a killed run's directory is
usable again (a requeued pre-emptible job meets exactly this)."""

import os
import signal
import socket
import time

import pytest

from crunet.train import train
from crunet.train.run_dir import RunDirBusy, RunLock


def hold_in_child(cfg, tiny_model, ready):
    """Fork a child that starts ``train(cfg)`` and stays inside it, holding the run directory; returns its pid."""
    pid = os.fork()
    if pid == 0:
        try:
            import crunet.train.trainer as trainer

            def stay(*args, **kwargs):  # the run directory is claimed before set-up begins
                ready.write_text("ready")
                while True:
                    time.sleep(1)

            trainer.setup = stay
            train(cfg, tiny_model())
        finally:
            os._exit(1)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert time.monotonic() < deadline, "the holder never claimed the run directory"
        time.sleep(0.05)
    return pid


def test_a_second_writer_is_refused_and_a_killed_holders_directory_is_usable(cfg, tiny_model, tmp_path):
    cfg.epochs, cfg.subset = 1, 64
    holder = hold_in_child(cfg, tiny_model, tmp_path / "ready")
    try:
        t0 = time.monotonic()
        with pytest.raises(RunDirBusy) as refused:
            train(cfg, tiny_model())
        assert time.monotonic() - t0 < 10  # at once: before any data is opened or model built
        message = str(refused.value)
        assert f"pid {holder} on host {socket.gethostname()}" in message and cfg.out in message
        assert "\n" not in message
        assert not (tmp_path / "run" / "metrics.csv").exists()
    finally:
        os.kill(holder, signal.SIGKILL)
        os.waitpid(holder, 0)
    summary = train(cfg, tiny_model())  # the kernel released the dead holder's lock
    assert summary["epochs"] == 1 and (tmp_path / "run" / "last.pt").is_file()
    RunLock(cfg.out).release()  # and the finished run released its own


def test_the_lock_is_per_directory_and_released_on_release(tmp_path):
    first = RunLock(tmp_path / "a")
    other = RunLock(tmp_path / "b")  # another directory: no conflict
    with pytest.raises(RunDirBusy, match=f"pid {os.getpid()}"):
        RunLock(tmp_path / "a")  # a second open file description conflicts, even in the same process
    first.release()
    RunLock(tmp_path / "a").release()
    other.release()
