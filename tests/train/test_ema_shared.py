import torch

import crunet
from crunet.train import ModelEma


def test_ema_updates_each_shared_tensor_once_per_step():
    model = crunet.create_model("crunet_small", num_classes=10, in_chans=1)
    state = model.state_dict()
    shared = [k for k in state if ".factors." in k]
    assert shared, "crunet_small should have CRU sharing groups"
    ptrs = [t.data_ptr() for t in state.values()]
    assert len(ptrs) == len(set(ptrs))  # each tensor listed once: no aliases under other keys
    name = shared[0]
    decay = 0.9
    ema = ModelEma(model, decay)
    expected = state[name].clone()
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update(model)
        expected = decay * expected + (1 - decay) * model.state_dict()[name]
    torch.testing.assert_close(ema.state_dict()[name], expected)
    # updated once, not k times: applying the rule twice per step would give a different value
    twice = state[name].clone()
    assert not torch.allclose(ema.state_dict()[name], decay**2 * twice + (1 - decay**2) * model.state_dict()[name])


def test_ema_copies_integer_buffers():
    model = crunet.create_model("preresnet_small", num_classes=10, in_chans=1)
    ema = ModelEma(model, 0.5)
    model.train()
    model(torch.randn(4, 1, 28, 28))
    ema.update(model)
    counts = [k for k in model.state_dict() if k.endswith("num_batches_tracked")]
    assert all(ema.state_dict()[k] == 1 for k in counts)
