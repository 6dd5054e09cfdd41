"""``crunet recipe list`` and ``crunet recipe show``: each resolved knob with where it comes from."""

from crunet.cli.main import main


def test_list_names_every_shipped_recipe(capsys):
    assert main(["recipe", "list"]) == 0
    names = [line.split(":")[0] for line in capsys.readouterr().out.splitlines()]
    assert names == ["cru-imagenet", "cru-places365", "dsfb-cifar", "dsfb-imagenet"]


def test_show_prints_each_knob_with_its_source(capsys):
    assert main(["recipe", "show", "dsfb-cifar", "--data", "cifar100", "--model", "dsfb_resnet32_s16u1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    knobs = {line.split(" = ")[0]: line for line in lines if not line.startswith("#")}
    assert knobs["nesterov"].startswith("nesterov = false  # train_cifar10.py:443")
    assert knobs["mean"] == ("mean = [0.507, 0.487, 0.441]  # utils.py:27, 69: CIFAR100 Normalize(mean=[0.507, 0.487, "
                             "0.441]) [kinds=cifar100]")
    assert knobs["model_kwargs.orth_unique"].startswith("model_kwargs.orth_unique = false  # train_cifar100.py")
    assert any(line.startswith("# note: CIFAR-100: train_cifar100.py at 936a886") for line in lines)


def test_show_of_a_data_folder_detects_its_kind(fmnist, capsys):
    assert main(["recipe", "show", "dsfb-cifar", "--data", str(fmnist)]) == 0
    out = capsys.readouterr().out
    assert "# for data fashion-mnist, model (any)" in out and "mean = [0.485, 0.456, 0.406]" in out


def test_an_unknown_recipe_is_one_line(capsys):
    assert main(["recipe", "show", "dsfb-cifar10"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "unknown recipe 'dsfb-cifar10'; known: cru-imagenet" in err[0]
