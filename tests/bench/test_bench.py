"""The benchmark produces well-formed rows and ratios against the peer that is present (never a speed test)."""

import csv
import functools
import json

import pytest

from crunet.bench import (
    BenchConfig,
    Stats,
    cases,
    dense_conv_rate,
    format_table,
    peers,
    run_bench,
    runner,
    write_csv,
    write_json,
)
from crunet.bench.runner import Case
from crunet.cli.main import main

TINY = dict(sizes=(16,), in_chans=1, num_classes=10, warmup=0, repeats=2, layouts=("channels_last",))


@pytest.fixture(autouse=True)
def _cheap_roof(monkeypatch):
    """The machine's dense-convolution rate, measured on a small convolution: correctness, not speed."""
    monkeypatch.setattr(runner, "dense_conv_rate", functools.partial(dense_conv_rate, repeats=1, batch=1, size=14))


@pytest.fixture(scope="module")
def tiny_run():
    cfg = BenchConfig(["crunet_small"], modes=("infer", "train"), variants=("eager", "deploy"),
                      peers=["preresnet_small"], **TINY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "dense_conv_rate", functools.partial(dense_conv_rate, repeats=1, batch=1, size=14))
        return cfg, *run_bench(cfg)


def test_rows_are_well_formed(tiny_run):
    cfg, rows, meta = tiny_run
    assert len(rows) == len(cases(cfg)) == 2 * 2 + 2  # two models x (infer: eager, deploy; train: eager)
    for row in rows:
        assert row.img_s_min <= row.img_s_q1 <= row.img_s <= row.img_s_q3 <= row.img_s_max
        assert row.img_s > 0 and row.runs == 2 and row.peak_rss_mib > 0
        assert row.gmac_s == pytest.approx(row.gmacs_per_img * row.img_s * (3 if row.case.mode == "train" else 1))
        assert row.roofline == pytest.approx(row.gmac_s / meta["dense_conv_gmac_s"]["float32"])
    assert {r.case.variant for r in rows if r.case.mode == "train"} == {"eager"}
    assert meta["dense_conv_gmac_s"]["float32"] > 0 and meta["threads"] >= 1


def test_ratios_are_against_the_peer_present(tiny_run):
    _, rows, _ = tiny_run
    ref = {(r.case.mode, r.case.layout): r for r in rows
           if r.case.model == "preresnet_small" and r.case.variant == "eager"}
    for row in rows:
        assert row.ref == "preresnet_small"
        assert row.ratio == pytest.approx(row.img_s / ref[row.case.mode, row.case.layout].img_s)
        best = max(r.img_s for (mode, _), r in ref.items() if mode == row.case.mode)
        assert row.ratio_best == pytest.approx(row.img_s / best)
    assert all(r.ratio == pytest.approx(1.0) for r in ref.values())


def test_table_csv_and_json(tiny_run, tmp_path):
    _, rows, meta = tiny_run
    table = format_table(rows, meta).splitlines()
    assert table[0].split()[:3] == ["model", "mode", "batch"] and len(table) == len(rows) + 3
    assert format_table(rows, meta, markdown=True).startswith("| model | mode |")
    write_csv(rows, tmp_path / "rows.csv")
    with open(tmp_path / "rows.csv") as f:
        read = list(csv.DictReader(f))
    assert len(read) == len(rows) and float(read[0]["img_s"]) == pytest.approx(rows[0].img_s)
    write_json(rows, meta, tmp_path / "rows.json")
    data = json.loads((tmp_path / "rows.json").read_text())
    assert data["meta"]["torch"] and len(data["rows"]) == len(rows) and "ratio_best" in data["rows"][0]


def test_default_peers_follow_timm(monkeypatch):
    monkeypatch.setattr(peers, "timm_available", lambda: False)
    assert peers.default_peers() == ["preresnext50_32x4d"]
    assert BenchConfig(["crunet56"]).reference() == "preresnext50_32x4d"
    monkeypatch.setattr(peers, "timm_available", lambda: True)
    assert peers.default_peers() == ["timm:resnext50_32x4d", "timm:resnet50", "preresnext50_32x4d"]
    assert BenchConfig(["crunet56"]).all_models() == ["crunet56", *peers.default_peers()]


def test_timm_model_without_timm_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(peers, "timm_available", lambda: False)
    with pytest.raises(ValueError, match="timm is not importable"):
        peers.build("timm:resnet50", 10, 3)


def test_cases_skip_deploy_for_training_and_timm():
    cfg = BenchConfig(["crunet_small"], modes=("infer", "train"), variants=("eager", "deploy"),
                      peers=["timm:resnet50"], **TINY)
    got = {(c.model, c.mode, c.variant) for c in cases(cfg)}
    assert got == {("crunet_small", "infer", "eager"), ("crunet_small", "infer", "deploy"),
                   ("crunet_small", "train", "eager"), ("timm:resnet50", "infer", "eager"),
                   ("timm:resnet50", "train", "eager")}
    assert Case("m", "infer", 8, 16, 1, "float32", "contiguous", "eager").group == ("infer", 8, 16, 1, "float32")


@pytest.mark.parametrize("bad", [dict(modes=("fly",)), dict(dtypes=("fp8",)), dict(layouts=()), dict(repeats=0)])
def test_bad_configs_are_refused(bad):
    with pytest.raises(ValueError):
        BenchConfig(["crunet_small"], **bad)


def test_stats():
    s = Stats.of([3.0, 1.0, 2.0, 4.0])
    assert (s.median, s.min, s.max, s.n) == (2.5, 1.0, 4.0, 4) and s.q1 <= s.median <= s.q3
    with pytest.raises(ValueError):
        Stats.of([])


def test_cli_bench_bf16_and_json(capsys, tmp_path):
    out = tmp_path / "b.json"
    args = ["bench", "preresnet_small", "--size", "16", "--in-chans", "1", "--num-classes", "10", "--peers",
            "--ref", "preresnet_small", "--layout", "channels_last", "--dtype", "bf16", "--warmup", "0",
            "--repeats", "1", "--no-memory", "--json", str(out)]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:7] == ["preresnet_small", "infer", "8", "1x16x16", "bf16", "channels_last", "eager"]
    assert json.loads(out.read_text())["rows"][0]["ratio"] == pytest.approx(1.0)


def test_cli_unknown_model_fails_in_one_line(capsys):
    assert main(["bench", "crunet_tiny", "--peers"]) == 2
    assert "unknown model 'crunet_tiny'" in capsys.readouterr().err


def test_cli_bench_device_cpu_runs_and_records_the_device(capsys, tmp_path):
    out = tmp_path / "b.json"
    args = ["bench", "preresnet_small", "--size", "16", "--in-chans", "1", "--num-classes", "10", "--peers",
            "--layout", "contiguous", "--warmup", "0", "--repeats", "1", "--no-memory", "--device", "cpu",
            "--json", str(out)]
    assert main(args) == 0
    data = json.loads(out.read_text())
    assert data["meta"]["device"] == "cpu" and data["meta"]["torch"]
    assert "peak_gpu_mib" not in data["rows"][0]  # CPU rows carry the resident memory only
    assert "GPU MiB" not in capsys.readouterr().out


@pytest.mark.parametrize("device, message", [("cuda", "CUDA is not available"), ("cuda:1", "CUDA is not available"),
                                             ("tpu9", "not a torch device"), ("meta", "runs on cpu, cuda")])
def test_cli_bench_bad_device_fails_in_one_line(device, message, capsys, monkeypatch):
    monkeypatch.setattr(runner.torch.cuda, "is_available", lambda: False)
    assert main(["bench", "preresnet_small", "--peers", "--device", device]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and f"--device '{device}'" in err


def test_bench_config_refuses_cuda_without_cuda(monkeypatch):
    monkeypatch.setattr(runner.torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        BenchConfig(["crunet_small"], device="cuda")
    assert BenchConfig(["crunet_small"], device="cpu").device == "cpu"
