import math

import pytest
import torch

from crunet.train import PRESETS, TrainConfig
from crunet.train.optim import LrSchedule, build_optimizer, scaled_lr


def test_paper_presets():
    assert PRESETS["paper50"] == {"lr": 0.1, "weight_decay": 5e-4, "schedule": "plateau"}
    deep = TrainConfig(preset="paper-deep").apply_preset()
    assert deep.lr == pytest.approx(math.sqrt(0.1)) and deep.weight_decay == 2e-4 and deep.schedule == "plateau"
    with pytest.raises(ValueError, match="unknown preset"):
        TrainConfig(preset="nope").apply_preset()


def test_sgd_nesterov_and_no_decay_on_norm_and_bias(tiny_model):
    model = tiny_model()
    opt = build_optimizer(model, TrainConfig(weight_decay=1e-3), 0.1)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 1e-3 and all(p.ndim > 1 for p in decay["params"])
    assert no_decay["weight_decay"] == 0 and {id(p) for p in no_decay["params"]} == {
        id(model.bn.weight), id(model.bn.bias), id(model.fc.bias)}
    assert len(build_optimizer(model, TrainConfig(decay_norm_and_bias=True), 0.1).param_groups) == 1


def test_linear_scaling():
    assert scaled_lr(TrainConfig(lr=0.1, lr_ref_batch=256), 1024) == pytest.approx(0.4)
    assert scaled_lr(TrainConfig(lr=0.1), 1024) == 0.1


def schedule(kind, **kw):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    return LrSchedule(opt, 1.0, kind, steps_per_epoch=10, epochs=10, **kw), opt


def test_warmup_then_cosine():
    s, opt = schedule("cosine", warmup_epochs=1)
    assert s.lr_at(0) == pytest.approx(0.1) and s.lr_at(4) == pytest.approx(0.5) and s.lr_at(9) == pytest.approx(1)
    assert s.lr_at(10) == pytest.approx(1.0) and s.lr_at(55) == pytest.approx(0.5) and s.lr_at(100) == pytest.approx(0)
    s.set(55)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)


def test_step_schedule():
    s, _ = schedule("step", step_epochs=[3, 6], gamma=0.1)
    assert [s.lr_at(i) for i in (29, 30, 59, 60)] == pytest.approx([1, 0.1, 0.1, 0.01])


def test_reduce_on_plateau_after_patience():
    s, _ = schedule("plateau", patience=1)
    for acc in (50, 60, 59, 58):
        s.epoch_end(acc)
    assert s.lr_at(0) == pytest.approx(0.1)  # two epochs without improving on 60 with patience 1
    state = s.state_dict()
    t, _ = schedule("plateau", patience=1)
    t.load_state_dict(state)
    assert t.lr_at(0) == pytest.approx(0.1) and t.best == 60
    c, _ = schedule("cosine")
    for acc in (50, 40, 30, 20):
        c.epoch_end(acc)
    assert c.lr_at(0) == pytest.approx(1.0)


def test_resume_config_comes_from_the_checkpoint_unless_given():
    saved = TrainConfig(model="preresnet_small", epochs=90, lr=0.3, data="/d").to_dict()
    merged = TrainConfig(resume="x/last.pt").merged_for_resume(saved)
    assert (merged.model, merged.epochs, merged.lr, merged.data, merged.resume) == ("preresnet_small", 90, 0.3, "/d",
                                                                                  "x/last.pt")
    assert TrainConfig(resume="x/last.pt", epochs=120).merged_for_resume(saved).epochs == 120
