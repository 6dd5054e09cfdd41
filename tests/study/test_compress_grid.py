"""The compress grid (the benchmark of docs/compress.md): its arms in order, cheapest first, and its study options
(kd, init) turning into the trainer's teacher and conversion, refused in one line."""

import pytest

import crunet.study.compress_grid as compress_grid
from crunet.errors import ConfigError
from crunet.layers.complexity import count_parameters
from crunet.models import create_model
from crunet.study.grid import RECIPES, grid, parse_option, size_overrides


def test_the_arms_run_cheapest_first_seed_major_with_three_seeds():
    every = grid("compress")
    runs = [r for r in every if r.model in (compress_grid.SHARED, compress_grid.PLAIN)]
    assert runs == every[:27]  # the DSFB pair's runs first, the CRU pair's after them
    epochs = [int(parse_option(r.option)["epochs"]) for r in runs]
    assert epochs == sorted(epochs) and set(epochs) == {2, 5, 20}
    cells = {(r.model, r.option) for r in runs}
    assert len(runs) == 3 * len(cells) == 27
    first = runs[:3]
    assert [parse_option(r.option)["init"] for r in first] == ["svd", "data", "norm"]
    assert {r.seed for r in first} == {0}
    scratch = [r for r in runs if "init" not in parse_option(r.option)]
    assert len(scratch) == 9 and all(parse_option(r.option)["amp"] == "none" for r in runs)
    assert sum("kd" not in parse_option(r.option) for r in runs) == 3  # arm (a): no teacher


def test_thinning_and_sharing_arms_hold_about_the_same_parameters():
    shared = count_parameters(create_model(compress_grid.SHARED, num_classes=10, in_chans=1))
    thin = create_model(compress_grid.PLAIN, num_classes=10, in_chans=1,
                        **size_overrides(compress_grid.PLAIN, float(compress_grid.THIN_SIZE)))
    assert abs(count_parameters(thin) / shared - 1) < 0.02
    cru = create_model(compress_grid.CRU, num_classes=10, in_chans=1,
                       **compress_grid.source_bottlenecks(compress_grid.CRU))
    thin = create_model(compress_grid.RESNEXT, num_classes=10, in_chans=1,
                        **size_overrides(compress_grid.RESNEXT, float(compress_grid.CRU_THIN_SIZE)))
    source = count_parameters(create_model(compress_grid.RESNEXT, num_classes=10, in_chans=1))
    assert count_parameters(cru) == 288_810 < 0.82 * source  # factorize_model's own design: a real compression
    assert abs(count_parameters(thin) / count_parameters(cru) - 1) < 0.02


def test_the_cru_pair_runs_five_arms_from_its_own_teacher(tmp_path, monkeypatch):
    monkeypatch.setattr(compress_grid, "TEACHER", str(tmp_path / "teacher-resnet32_cifar" / "last.pt"))
    runs = [r for r in grid("compress-small") if r.model in (compress_grid.CRU, compress_grid.RESNEXT)]
    assert len(runs) == 21 and {r.seed for r in runs} == {0, 1, 2}
    spec = next(r for r in runs if "init=cru" in r.option)
    cfg = spec.train_config(RECIPES["fashion-mnist"], str(tmp_path / "run"))
    assert cfg.teacher == cfg.init_from == str(tmp_path / "teacher-preresnext_small-n3000" / "last.pt")
    assert [s.width for s in cfg.model_kwargs["stages"]] == [32, 64, 128]
    with pytest.raises(ConfigError, match="resnet32_cifar is not a CRU design of preresnext_small"):
        compress_grid.source_bottlenecks("resnet32_cifar")


def test_kd_and_init_become_the_teacher_and_the_conversion(tmp_path, monkeypatch):
    teacher = tmp_path / "last.pt"
    monkeypatch.setattr(compress_grid, "TEACHER", str(teacher))
    spec = next(r for r in grid("compress") if "init=norm" in r.option)
    cfg = spec.train_config(RECIPES["fashion-mnist"], str(tmp_path / "run"))
    assert (cfg.teacher, cfg.init_from, cfg.init_method) == (str(teacher), str(teacher), "norm")
    assert cfg.model_kwargs["widths"] == (10, 21, 42) and (cfg.epochs, cfg.lr, cfg.amp) == (2, 0.05, "none")
    scratch = next(r for r in grid("compress") if "kd=1" in r.option and "init" not in r.option
                   and r.model == compress_grid.SHARED)
    cfg = scratch.train_config(RECIPES["fashion-mnist"], str(tmp_path / "run"))
    assert cfg.init_from is None and cfg.teacher == str(teacher) and cfg.model_kwargs["orth_unique"] is True


def test_an_unknown_init_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="expected kd=1 or init=one of svd, data, norm, cru"):
        compress_grid.apply_option(None, "init", "qr")


def test_the_small_scale_runs_the_same_arms_on_3000_images_from_its_own_teacher(tmp_path, monkeypatch):
    monkeypatch.setattr(compress_grid, "TEACHER", str(tmp_path / "teacher" / "last.pt"))
    full, small = grid("compress"), grid("compress-small")
    assert [(r.model, r.seed) for r in small] == [(r.model, r.seed) for r in full]
    assert all(parse_option(r.option)["subset"] == "3000" for r in small)
    assert not {r.key for r in small} & {r.key for r in full}  # its rows never stand in for the full scale's
    spec = next(r for r in small if "init=svd" in r.option)
    cfg = spec.train_config(RECIPES["fashion-mnist"], str(tmp_path / "run"))
    assert (cfg.subset, cfg.batch_size, cfg.lr_ref_batch) == (3000, 32, 128)
    assert cfg.teacher == cfg.init_from == str(tmp_path / "teacher-n3000" / "last.pt")


def test_a_bad_batch_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="study option batch=0: expected a whole number"):
        compress_grid.apply_option(None, "batch", "0")
