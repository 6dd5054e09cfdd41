import pytest

from crunet.study.grid import Recipe


@pytest.fixture
def tiny_recipes(fmnist):
    """A recipe of a few steps on the Fashion-MNIST look-alike: the runner's behaviour, not accuracy, is under test."""
    settings = {"batch_size": 32, "subset": 128, "workers": 0, "warmup_epochs": 0.0}
    return {"tiny": Recipe(data=str(fmnist), epochs=2, settings=settings)}


@pytest.fixture
def record_lr():
    """A function recording one learning-rate check result (model, rate, held-out top-1) in a results folder."""
    from crunet.study.grid import lr_option
    from crunet.study.results_csv import append_row

    def record(results, model: str, lr: str, top1: float) -> None:
        append_row(results / "lr-check.csv", {"key": f"fashion-mnist/{model}/{lr_option(lr)}/seed0",
                                              "dataset": "fashion-mnist", "model": model, "option": lr_option(lr),
                                              "seed": 0, "test_top1": top1})
    return record


@pytest.fixture
def checked_rates(tmp_path, record_lr):
    """A finished learning-rate check in ``tmp_path``: crunet_small clearly best at 0.4 (+0.3 points), the others
    at the default 0.2 (preresnext_small's 0.4 is better by only 0.1: not clearly)."""
    scores = {"crunet_small": (92.4, 92.7, 93.0, 92.8), "preresnext_small": (92.5, 93.0, 93.1, 92.0),
              "preresnet_small": (92.0, 92.5, 92.4, None), "resnet32_cifar": (91.0, 91.5, 91.2, None),
              "dsfb_resnet32_s16u1": (90.0, 90.6, 90.5, None)}
    for model, by_lr in scores.items():
        for lr, top1 in zip(("0.1", "0.2", "0.4", "0.8"), by_lr, strict=True):
            if top1 is not None:
                record_lr(tmp_path, model, lr, top1)
    return tmp_path
