import sys
import types

from crunet.train import train
from crunet.train.progress import Progress


def test_bar_on_request_and_lines_when_not_a_terminal(capsys):
    bar = Progress(4, "epoch 1/1", mode="bar")
    assert bar.bar is not None
    for _ in range(4):
        bar.update(32, loss=1.5)
    bar.bar.refresh()  # tqdm redraws at most every 0.1 s
    bar.close()
    assert "img/s" in capsys.readouterr().err
    auto = Progress(4, "epoch 1/1", mode="auto", log_every=2)  # pytest's stderr is not a terminal
    assert auto.mode == "lines" and auto.bar is None
    for _ in range(4):
        auto.update(32, loss=1.5)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("epoch 1/1 4/4 loss 1.5") and "eta 0s" in lines[-1]
    silent = Progress(4, "x", mode="auto", enabled=False)
    silent.update(1)
    assert capsys.readouterr().out == ""


def test_tensorboard_scalars_when_installed(cfg, tiny_model, monkeypatch):
    written = []

    class FakeWriter:
        def __init__(self, logdir):
            written.append(("dir", logdir))

        def add_scalar(self, key, value, step):
            written.append((key, step))

        def flush(self):
            pass

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    cfg.tensorboard, cfg.epochs, cfg.subset = True, 1, 64
    train(cfg, tiny_model())
    assert written[0] == ("dir", f"{cfg.out}/tb") and ("val_top1", 1) in written


def test_sync_bn_on_the_cpu_is_refused_clearly(cfg, tiny_model, monkeypatch):
    import crunet.train.trainer as trainer
    from crunet.train import dist

    monkeypatch.setattr(trainer, "setup_distributed", lambda device: dist.DistInfo(rank=0, world=2))
    cfg.sync_bn = True
    try:
        train(cfg, tiny_model())
    except ValueError as err:
        assert "SyncBatchNorm does not run on the CPU" in str(err)
    else:
        raise AssertionError("expected a ValueError")
