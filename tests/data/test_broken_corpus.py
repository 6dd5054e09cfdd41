"""Data that lies: a corpus of broken inputs generated here. Each bad image is skipped and counted (the run
finishes and reports the count), or with --strict-data is an error; each broken data-set file is one DataError."""

import gzip
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from crunet.data import DataSpec, eval_shard, open_split
from crunet.data.folders import BadImageError, load_image
from crunet.data.idx import read_idx
from crunet.data.transforms import EvalCrops, to_mode
from crunet.errors import DataError

SPEC = DataSpec(in_chans=3, size=16, mean=(0.5,) * 3, std=(0.5,) * 3, augment="rrc", workers=0)


def _png(path, size=(24, 24), mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode).save(path)


def _bomb_png(path, side=30000):
    """A valid PNG header declaring side x side pixels, with almost no data: Pillow's bomb check must refuse it."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


# name -> (writer, good?): good ones are odd but valid and must load; bad ones must be skipped and counted
def corpus(folder):
    good = np.random.default_rng(1).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    jpeg, png = folder / "_src.jpeg", folder / "_src.png"
    Image.fromarray(good).save(jpeg)
    Image.fromarray(good).save(png)
    kinds = {
        "truncated_jpeg.jpg": lambda p: p.write_bytes(jpeg.read_bytes()[: len(jpeg.read_bytes()) // 2]),
        "truncated_png.png": lambda p: p.write_bytes(png.read_bytes()[: len(png.read_bytes()) // 2]),
        "zero_bytes.jpg": lambda p: p.write_bytes(b""),
        "text.jpg": lambda p: p.write_text("this is not an image"),
        "random_bytes.png": lambda p: p.write_bytes(np.random.default_rng(2).bytes(500)),
        "jpeg_header_only.jpg": lambda p: p.write_bytes(b"\xff\xd8\xff\xe0" + bytes(16)),
        "bomb.png": _bomb_png,
        "fifo.png": lambda p: os.mkfifo(p),
        "symlink_loop.png": lambda p: os.symlink(p, p),
        "dangling_symlink.png": lambda p: os.symlink(folder / "nowhere.png", p),
        "folder.png": lambda p: p.mkdir(),
        "html.jpg": lambda p: p.write_text("<html><body>403 Forbidden</body></html>"),
        "gzip.png": lambda p: p.write_bytes(gzip.compress(png.read_bytes())),
    }
    if os.geteuid() != 0:  # root reads everything
        kinds["unreadable.png"] = lambda p: (_png(p), p.chmod(0))
    odd = {
        "png_named.jpg": lambda p: p.write_bytes(png.read_bytes()),  # wrong extension: decoded by content
        "cmyk.tif": lambda p: _png(p, mode="CMYK"),
        "palette.png": lambda p: _png(p, mode="P"),
        "rgba.png": lambda p: _png(p, mode="RGBA"),
        "gray.png": lambda p: _png(p, mode="L"),
        "one_pixel.png": lambda p: _png(p, size=(1, 1)),
        "one_by_20000.png": lambda p: _png(p, size=(1, 20000)),
        "sixteen_bit.png": lambda p: Image.fromarray(np.full((12, 12), 65535, np.uint16)).save(p),
        "bilevel.png": lambda p: _png(p, mode="1"),
    }
    for name, write in {**kinds, **odd}.items():
        write(folder / name)
    jpeg.unlink()
    png.unlink()
    return sorted(kinds), sorted(odd)


@pytest.fixture
def broken(tmp_path):
    for split in ("train", "val"):
        for name in ("a", "b"):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(3):
                _png(tmp_path / split / name / f"{i}.png", seed=i)
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()  # hidden: not a class
    _png(tmp_path / "train" / ".ipynb_checkpoints" / "x.png")
    bad, odd = corpus(tmp_path / "train" / "a")
    return tmp_path, bad, odd


@pytest.mark.parametrize("decode", ["cpu", "device"])
@pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")
def test_a_corpus_of_broken_images_is_skipped_and_counted(broken, decode):
    if decode == "device":  # the workers read bytes, torchvision decodes: the same images skipped
        pytest.importorskip("torchvision.io")
    root, bad, odd = broken
    assert len(bad) + len(odd) >= 20
    loader = open_split(root, "train", DataSpec(**{**SPEC.__dict__, "decode": decode}))
    assert loader.dataset.classes == ["a", "b"]
    skipped, labels = 0, []
    for x, y, n in loader.iterate(eval_shard(len(loader), 5), 0, train=True):
        skipped += n
        labels += y.tolist()
        assert len(y) == 0 or (x.shape[1:] == (3, 16, 16) and torch.isfinite(x).all())
    assert skipped == len(bad) and len(labels) == 6 + len(odd)
    for name in bad:  # what --strict-data raises
        with pytest.raises(BadImageError, match=f"bad image .*{name}"):
            load_image(root / "train" / "a" / name)
    val = open_split(root, "val", DataSpec(**{**SPEC.__dict__, "crops": 10, "decode": decode}))
    assert sum(n for _, _, n in val.iterate(eval_shard(len(val), 4), 0, train=False)) == 0


def test_the_run_finishes_and_reports_the_count(broken, tiny_net, tmp_path, capsys):
    from crunet.train import TrainConfig, train

    root, bad, _ = broken
    cfg = TrainConfig(model="tinynet", data=str(root), out=str(tmp_path / "run"), epochs=1, batch_size=4, lr=0.1,
                      warmup_epochs=0.0, progress="none", tensorboard=False, plot=False, workers=0)
    summary = train(cfg, tiny_net)  # 28 images, batch 4: every one is drawn once
    assert summary["steps"] >= 1
    assert f"skipped {len(bad)} unreadable image(s)" in capsys.readouterr().out


def test_eval_crops_of_a_1x20000_image_build_no_giant_intermediate(monkeypatch):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20000, 1, 3), dtype=np.uint8))
    sizes = []
    real = Image.Image.resize
    monkeypatch.setattr(Image.Image, "resize", lambda self, size, *a, **k: (sizes.append(size),
                                                                             real(self, size, *a, **k))[1])
    for crops in (1, 10):
        out = EvalCrops(224, 256, (0.5,) * 3, (0.5,) * 3, 3, crops)(img)
        assert out.shape[-2:] == (224, 224)
    assert max(w * h for w, h in sizes) == 224 * 224


def test_sixteen_bit_images_are_scaled_not_clipped():
    ramp = np.array([[0, 257 * 64, 257 * 128, 65535]], dtype=np.uint16)
    assert np.asarray(to_mode(Image.fromarray(ramp), 1)).tolist() == [[0, 64, 128, 255]]
    assert np.asarray(to_mode(Image.fromarray(ramp), 3))[0, :, 0].tolist() == [0, 64, 128, 255]


def test_class_lists_that_differ_are_an_error_naming_the_classes(broken):
    root, _, _ = broken
    (root / "train" / "bird").mkdir()
    with pytest.raises(DataError, match="only in train: bird"):
        open_split(root, "val", SPEC)


@pytest.fixture
def tiny_net():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("train_conftest", Path(__file__).parents[1] / "train" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TinyNet(num_classes=2, in_chans=3)
    model.pretrained_cfg = {**model.pretrained_cfg, "mean": (0.5,) * 3, "std": (0.5,) * 3}
    return model


def _idx_bytes(array):
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + \
        array.astype(np.uint8).tobytes()


@pytest.mark.parametrize("kind", ["corrupt_gzip", "truncated_gzip", "truncated_idx", "wrong_magic", "empty",
                                  "lying_header", "gzip_bomb", "trailing_bytes"])
def test_broken_idx_files_are_one_clear_error(tmp_path, kind):
    good = _idx_bytes(np.zeros((4, 5, 5)))
    path = tmp_path / "x.gz"
    if kind == "corrupt_gzip":
        data = bytearray(gzip.compress(good))
        data[12:20] = b"\xff" * 8
        path.write_bytes(bytes(data))
    elif kind == "truncated_gzip":
        path.write_bytes(gzip.compress(good)[:-12])
    elif kind == "truncated_idx":
        path.write_bytes(gzip.compress(good[:-7]))
    elif kind == "wrong_magic":
        path.write_bytes(gzip.compress(b"\x01\x02" + good[2:]))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "lying_header":  # 10^5 x 10^5 x 10^5 bytes declared in a few bytes
        path.write_bytes(gzip.compress(struct.pack(">BBBBIII", 0, 0, 8, 3, 10**5, 10**5, 10**5)))
    elif kind == "gzip_bomb":  # 10 x 10 declared, 50 MB of zeros after it: read up to the declared size only
        with gzip.open(path, "wb") as f:
            f.write(struct.pack(">BBBBII", 0, 0, 8, 2, 10, 10))
            for _ in range(50):
                f.write(bytes(1 << 20))
    else:
        path.write_bytes(gzip.compress(good + b"extra"))
    with pytest.raises(DataError) as err:
        read_idx(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_places365_labels_are_checked_when_the_lists_are_read(tmp_path):
    from crunet.data.folders import file_list_samples

    (tmp_path / "img.jpg").write_bytes(b"x")
    (tmp_path / "list.txt").write_text("img.jpg 0\nimg.jpg -1\n")
    with pytest.raises(DataError, match="list.txt:2: label -1"):
        file_list_samples(tmp_path / "list.txt", tmp_path)
    (tmp_path / "list.txt").write_text("img.jpg 0\nimg.jpg 3\n")
    with pytest.raises(DataError, match="list.txt:2: label 3 is outside 0..2"):
        file_list_samples(tmp_path / "list.txt", tmp_path, 3)
    with pytest.raises(DataError, match="none of the first 2 listed images exists under .*wrong"):
        file_list_samples(tmp_path / "list.txt", tmp_path / "wrong")
