"""Recipes as data (crunet.train.recipes): the DSFB CIFAR recipe is the source's, knob for knob; options given win;
a user's copy is checked field by field; every shipped recipe loads; resume keeps the run's values."""

import json
import math
from types import SimpleNamespace

import pytest

from crunet.cli.main import main
from crunet.errors import ConfigError, MissingFileError
from crunet.train import recipes
from crunet.train.config import TrainConfig
from crunet.train.optim import LrSchedule
from tests.data.cifar_files import write_cifar_set

# ssregibility/Net_RL2 at 936a886, train_cifar10.py / train_cifar100.py / utils.py, written out here from the source
DSFB_CIFAR10 = {
    "epochs": 300,  # train_cifar10.py:451 for i in range(args.starting_epoch, 300)
    "batch_size": 256,  # :24 --batch_size default 256
    "lr": 0.1,  # :18 --lr default 0.1
    "momentum": 0.9,  # :19 --momentum default 0.9
    "nesterov": False,  # :443 optim.SGD(net.parameters(), lr, momentum, weight_decay): no nesterov
    "weight_decay": 5e-4,  # :20 --weight_decay default 5e-4
    "decay_norm_and_bias": True,  # :443 net.parameters(): every parameter decays
    "schedule": "step",  # :421-429 adjust_learning_rate, called with i+1 (:454)
    "step_epochs": [150, 225],  # :423-426 epoch > 150, epoch > 225 with epoch = i+1
    "gamma": 0.1,  # :424, :426 lr * 0.1
    "warmup_epochs": 0.0,  # no warm-up anywhere in the script
    "label_smoothing": 0.0,  # :72 nn.CrossEntropyLoss()
    "augment": "light",  # utils.py:13-14 RandomCrop(32, padding=4) + RandomHorizontalFlip()
    "pad": 4,  # utils.py:13 padding=4
    "crops": 1,  # utils.py:58-62 the test image itself
    "crop_pct": 1.0,  # utils.py:58-62 no resize
    "mean": [0.485, 0.456, 0.406],  # utils.py:16, 61 CIFAR10 Normalize: ImageNet's mean
    "std": [0.229, 0.224, 0.225],  # utils.py:16, 61 ImageNet's std
    "model_kwargs": {"orth_lambda": 10.0,  # :21 --lambdaR default 10
                     "orth_unique": True},  # :113-301 train_basis_*(include_unique_basis=True)
}
DSFB_CIFAR100 = {
    **DSFB_CIFAR10,
    "mean": [0.507, 0.487, 0.441],  # utils.py:27, 69 CIFAR100 Normalize
    "std": [0.267, 0.256, 0.276],  # utils.py:27, 69
    "model_kwargs": {"orth_lambda": 10.0,  # train_cifar100.py:25 --lambdaR default 10
                     "orth_unique": False},  # :119-184 train_basis: the shared bases only
}


@pytest.mark.parametrize("kind, expected", [("cifar10", DSFB_CIFAR10), ("cifar100", DSFB_CIFAR100)])
def test_dsfb_cifar_is_the_source_knob_for_knob(kind, expected):
    assert recipes.resolve("dsfb-cifar", kind, "dsfb_resnet56_s16u1_double") == expected


def test_a_run_on_cifar_files_resolves_the_recipe_by_the_data_kind(tmp_path):
    data = write_cifar_set(tmp_path / "c100", "cifar100", n_train=4, n_test=2).path
    cfg = TrainConfig.given(model="dsfb_resnet32_s16u1", data=str(data), recipe="dsfb-cifar").apply_preset()
    assert {k: getattr(cfg, k) for k in DSFB_CIFAR100} == DSFB_CIFAR100
    cfg.check()


def test_dsfb_imagenet_mobilenetv2_steps_x01_x01_x05():
    values = recipes.resolve("dsfb-imagenet", "folder", "dsfb_mobilenetv2_sharedpp")
    # train_ilsvrc.py:444-454 adjust_learning_rate_mobilenetv2, :485-496 300 epochs; README.md:53 wd 1e-5
    assert (values["epochs"], values["step_epochs"], values["step_gammas"], values["weight_decay"]) == (
        300, [150, 225, 285], [0.1, 0.1, 0.5], 1e-5)
    assert values["model_kwargs"] == {"orth_lambda": 10.0, "orth_unique": False, "orth_separate": True}
    cfg = TrainConfig(**{k: v for k, v in values.items() if k != "model_kwargs"})
    schedule = LrSchedule.for_run(SimpleNamespace(param_groups=[{}]), 0.1, cfg, 10)  # 10 steps an epoch
    lrs = [schedule.lr_at(epoch * 10) for epoch in (149, 150, 225, 285, 299)]
    assert lrs == pytest.approx([0.1, 0.01, 0.001, 0.0005, 0.0005])
    resnet = recipes.resolve("dsfb-imagenet", "folder", "dsfb_resnet50_shared")
    assert (resnet["epochs"], resnet["step_epochs"], resnet["weight_decay"]) == (150, [60, 100, 140], 4e-5)
    assert "step_gammas" not in resnet
    assert recipes.resolve("dsfb-imagenet", "folder", "resnet50")["weight_decay"] == 1e-4


def test_cru_recipes_follow_the_paper_by_depth():
    shallow, deep = (recipes.resolve("cru-imagenet", "folder", m) for m in ("crunet56", "crunet116"))
    assert (shallow["lr"], shallow["weight_decay"]) == (0.1, 5e-4)  # section 5: 50-layer nets
    assert (deep["lr"], deep["weight_decay"]) == (pytest.approx(math.sqrt(0.1)), 2e-4)  # deeper nets
    assert shallow["mean"] == [124 / 255, 117 / 255, 104 / 255]  # RGB - [124, 117, 104]
    assert shallow["std"] == [1 / (0.0167 * 255)] * 3  # times 0.0167
    assert (shallow["nesterov"], shallow["schedule"], shallow["batch_size"]) == (True, "plateau", 32)
    assert recipes.resolve("cru-places365", "places365", "crunet116")["crops"] == 10


def test_options_given_win_even_where_they_equal_the_defaults():
    cfg = TrainConfig.given(model="dsfb_resnet32_s8u1", recipe="dsfb-cifar", nesterov=True, lr=0.05,
                            model_kwargs={"orth_lambda": 0.0}).apply_preset()
    assert (cfg.nesterov, cfg.lr, cfg.momentum, cfg.batch_size) == (True, 0.05, 0.9, 256)
    assert cfg.model_kwargs == {"orth_lambda": 0.0, "orth_unique": True}  # merged key by key, the given key wins
    library = TrainConfig(model="dsfb_resnet32_s8u1", recipe="dsfb-cifar", lr=0.05).apply_preset()  # differs: given
    assert (library.lr, library.nesterov, library.label_smoothing) == (0.05, False, 0.0)


def test_a_recipe_and_a_preset_together_are_refused():
    with pytest.raises(ConfigError, match="give one"):
        TrainConfig(recipe="dsfb-cifar", preset="paper50").check()


@pytest.mark.parametrize("text, match", [
    ("[knobs]\nweight_dacay = 0.1\n", "unknown field 'weight_dacay'.*did you mean weight_decay"),
    ("[knobs]\nnesterov = 'no'\n", "nesterov must be bool"),
    ("[knobs]\nstep_epochs = [150, 22.5]\n", "step_epochs must be list\\[int\\]"),
    ("[knobs]\nmodel = 'resnet50'\n", "names the run"),
    ("[knobs]\nlr = { value = 0.1, form = 'x' }\n", "unknown key 'form'.*did you mean from"),
    ("[[when]]\nkind = ['cifar10']\n", "unknown key 'kind'.*did you mean kinds"),
    ("[knobs\n", "not valid TOML"),
])
def test_a_users_copy_is_checked_field_by_field(tmp_path, text, match):
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(ConfigError if "TOML" not in match else Exception, match=match) as err:
        recipes.load(str(path))
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_a_users_copy_with_bare_values_says_they_come_from_it(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[knobs]\nlr = 0.05\nstep_epochs = [2, 3]\n[[when]]\nkinds = ["cifar10"]\n[when.knobs]\npad = 2\n')
    knobs = {k.field: k for k in recipes.explain(str(path), "cifar10", "x")}
    assert (knobs["lr"].value, knobs["lr"].source, knobs["pad"].selector) == (0.05, str(path), "kinds=cifar10")
    assert "pad" not in recipes.resolve(str(path), "fashion-mnist", "x")


def test_unknown_names_and_missing_files_list_what_exists():
    with pytest.raises(ConfigError, match="known: cru-imagenet, cru-places365, dsfb-cifar, dsfb-imagenet"):
        recipes.load("dsfb-cifar10")
    with pytest.raises(MissingFileError, match="does not exist"):
        recipes.load("/nowhere/mine.toml")


KINDS = ("cifar10", "cifar100", "fashion-mnist", "folder", "places365")
MODELS = ("dsfb_resnet32_s16u1", "dsfb_resnet50_sharedpp", "dsfb_mobilenetv2_shared", "crunet56", "crunet116",
          "resnet50", "mobilenetv2")


@pytest.mark.parametrize("name", ["cru-imagenet", "cru-places365", "dsfb-cifar", "dsfb-imagenet"])
def test_every_shipped_recipe_loads_and_checks(name):
    recipe = recipes.load(name)
    assert recipe.name == name and recipe.title and recipe.source
    assert all(k.source for k in recipe.knobs) and all(k.source for v in recipe.variants for k in v.knobs)
    for kind in KINDS:
        for model in MODELS:
            values = recipes.resolve(name, kind, model)
            TrainConfig(model=model, recipe=name, **values).check()
            for key in ("epochs", "batch_size", "lr", "momentum", "nesterov", "weight_decay", "decay_norm_and_bias",
                        "schedule", "warmup_epochs", "label_smoothing", "augment", "crops", "mean", "std"):
                assert key in values, (name, kind, model, key)


def test_train_on_cifar_files_then_resume_keeps_the_runs_values(tmp_path):
    """crunet train --recipe on CIFAR-10 files is the source's recipe in config.json, but for the options given; on
    resume the values come from the saved config, the recipe is not applied again over the run's own options."""
    data, out = write_cifar_set(tmp_path / "c10", n_train=16, n_test=8).path, tmp_path / "run"
    common = ["--progress", "none", "--no-tensorboard", "--no-plot", "--workers", "0"]
    assert main(["train", "--data", str(data), "--out", str(out), "--model", "dsfb_resnet32_s8u1", "--recipe",
                 "dsfb-cifar", "--epochs", "1", "--batch-size", "8", *common]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert {k: saved[k] for k in DSFB_CIFAR10} == {**DSFB_CIFAR10, "epochs": 1, "batch_size": 8}
    assert main(["train", "--resume", str(out), "--epochs", "2", *common]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert {k: saved[k] for k in DSFB_CIFAR10} == {**DSFB_CIFAR10, "epochs": 2, "batch_size": 8}
    assert saved["recipe"] == "dsfb-cifar"
    from crunet.interop.predict import load_predictor

    transform = load_predictor(out / "last.pt").transform  # crunet predict normalizes as the run did
    assert (list(transform.mean), list(transform.std)) == (DSFB_CIFAR10["mean"], DSFB_CIFAR10["std"])


def test_the_runs_normalization_reaches_training_and_evaluation(fmnist):
    """data_spec serves training, crunet eval and (through the checkpoint's config) predict alike."""
    import crunet
    from crunet.train.inputs import data_spec

    model = crunet.create_model("dsfb_resnet32_s8u1", num_classes=10, in_chans=1)
    spec = data_spec(TrainConfig(data=str(fmnist), mean=[0.5], std=[0.25], crop_pct=0.9), model)
    assert (spec.mean, spec.std, spec.crop_pct) == ((0.5,), (0.25,), 0.9)
    own = data_spec(TrainConfig(data=str(fmnist)), model)
    assert (own.mean, own.std) == (tuple(model.pretrained_cfg["mean"]), tuple(model.pretrained_cfg["std"]))
