"""TensorLoader.to(device): the images live on the device, the random draws stay on the CPU generator."""

import pytest
import torch

from crunet.data.sources import FolderLoader
from crunet.data.tensor_data import TensorLoader, pad_crop_flip


def _loader(seed=7, pad=2, flip=True):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (64,), generator=g)
    return TensorLoader(images, labels, (0.3,), (0.35,), pad=pad, flip=flip, seed=seed)


def _batches():
    return list(torch.randperm(64, generator=torch.Generator().manual_seed(1)).split(16))


def _all(loader, train=True, epoch=2):
    return [(x.cpu(), y.cpu(), s) for x, y, s in loader.iterate(_batches(), epoch, train=train)]


@pytest.mark.parametrize("train", [True, False])
def test_moved_to_cpu_yields_identical_batches(train):
    plain, moved = _all(_loader(), train), _all(_loader().to("cpu"), train)
    for (x0, y0, s0), (x1, y1, s1) in zip(plain, moved, strict=True):
        assert torch.equal(x0, x1) and torch.equal(y0, y1) and s0 == s1 == 0


def test_subset_and_hold_out_keep_the_device_and_the_batches():
    a, b = _loader(), _loader().to("cpu")
    (a_train, a_held), (b_train, b_held) = a.subset(48).hold_out(8, a), b.subset(48).hold_out(8, b)
    assert b_train.device == b_held.device == torch.device("cpu")
    assert torch.equal(a_held.labels, b_held.labels)
    batches = [torch.arange(0, 40, 3), torch.arange(1, 40, 5)]
    for x, y in zip(a_train.iterate(batches, 1), b_train.iterate(batches, 1), strict=True):
        assert torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])


def test_draws_do_not_depend_on_the_device():
    """On the meta device nothing is computed, but pad_crop_flip must draw exactly what it draws on the CPU."""
    x = torch.zeros(16, 1, 28, 28, dtype=torch.uint8)
    states = []
    for dev in ("cpu", "meta"):
        g = torch.Generator().manual_seed(5)
        out = pad_crop_flip(x.to(dev), 2, True, g)
        assert out.shape == x.shape and out.device.type == dev
        states.append(g.get_state())
    assert torch.equal(states[0], states[1])


def test_loader_on_meta_keeps_its_generator_on_the_cpu():
    loader = _loader().to("meta")
    assert loader.device.type == "meta" and loader.generator.device.type == "cpu"
    x, y, _ = next(loader.iterate(_batches(), 0, train=True))
    assert x.device.type == "meta" and x.shape == (16, 1, 28, 28) and y.shape == (16,)


def test_folder_loader_pins_memory_only_for_cuda():
    loader = FolderLoader(dataset=None, workers=0)
    assert loader.to("cpu").pin_memory is False
    assert loader.to("cuda").pin_memory is True
    assert loader.to(torch.device("cpu")).pin_memory is False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("train", [True, False])
def test_cuda_batches_match_the_cpu(train):
    cpu, gpu = _all(_loader(), train), _all(_loader().to("cuda"), train)
    for (x0, y0, _), (x1, y1, _) in zip(cpu, gpu, strict=True):
        assert torch.equal(y0, y1)
        torch.testing.assert_close(x1, x0, rtol=1e-6, atol=1e-6)
