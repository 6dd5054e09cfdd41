import os

import numpy as np
import pytest

from crunet.data import DataSpec, detect_kind, eval_shard, num_classes_of, open_split
from crunet.data.folders import BadImageError, file_list_samples, read_categories

SPEC = DataSpec(in_chans=3, size=16, mean=(0.5,) * 3, std=(0.5,) * 3, augment="rrc", workers=0)


@pytest.fixture
def class_folders(tmp_path, image_saver):
    """train/ with 3 classes (one empty) holding good images of several modes and four bad files; val/ clean."""
    for split in ("train", "val"):
        for k, name in enumerate(("cat", "dog")):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i, mode in enumerate(("RGB", "L", "RGBA", "P", "CMYK")):
                ext = "tif" if mode == "CMYK" else "png"
                image_saver(folder / f"{i}.{ext}", mode, seed=10 * k + i)
    (tmp_path / "train" / "empty").mkdir()
    (tmp_path / "val" / "empty").mkdir()  # the same class list in both splits (an empty folder keeps a class)
    bad = tmp_path / "train" / "cat"
    (bad / "zero.jpg").write_bytes(b"")
    (bad / "text.png").write_text("not an image")
    data = (bad / "0.png").read_bytes()
    (bad / "truncated.png").write_bytes(data[: len(data) // 2])
    os.symlink(tmp_path / "gone.png", bad / "unreadable.png")
    return tmp_path


def collect(loader, batch_size=4):
    xs, ys, skipped = [], [], 0
    for x, y, bad in loader.iterate(eval_shard(len(loader), batch_size), epoch=0, train=True):
        xs += list(x)
        ys += y.tolist()
        skipped += bad
    return xs, ys, skipped


def test_class_folders_skip_and_count_bad_images(class_folders):
    assert detect_kind(class_folders) == "folder"
    loader = open_split(class_folders, "train", SPEC)
    assert loader.empty_classes == ["empty"] and num_classes_of(loader) == 3
    xs, ys, skipped = collect(loader)
    assert skipped == 4 and len(xs) == 10
    assert sorted(ys) == [0] * 5 + [1] * 5 and all(x.shape == (3, 16, 16) for x in xs)
    val = open_split(class_folders, "val", SPEC)
    assert len(val) == 10 and collect(val)[2] == 0


def test_strict_data_fails_on_bad_image_and_empty_folder(class_folders):
    strict = DataSpec(**{**SPEC.__dict__, "strict": True})
    with pytest.raises(ValueError, match="empty class folder.*empty"):
        open_split(class_folders, "train", strict)
    (class_folders / "train" / "empty").rmdir()
    with pytest.raises(BadImageError, match="bad image"):
        collect(open_split(class_folders, "train", strict))


def test_bad_images_in_worker_processes_are_counted_too(class_folders):
    loader = open_split(class_folders, "train", DataSpec(**{**SPEC.__dict__, "workers": 2}))
    assert collect(loader, batch_size=3)[2] == 4


def test_same_sample_same_epoch_same_augmentation(class_folders):
    loader = open_split(class_folders, "train", SPEC)
    a = loader.dataset[(3, 7)][0]
    np.testing.assert_array_equal(a.numpy(), loader.dataset[(3, 7)][0].numpy())
    assert not np.array_equal(a.numpy(), loader.dataset[(3, 8)][0].numpy())


@pytest.fixture
def places(tmp_path, image_saver):
    """Places365-Standard layout: data_256/<letter>/<class>/..., a flat val_256/, lists, categories."""
    cats = ["/a/airfield", "/b/bakery", "/c/canyon"]
    (tmp_path / "categories_places365.txt").write_text("".join(f"{c} {i}\n" for i, c in enumerate(cats)))
    train_lines, val_lines = [], []
    for i, c in enumerate(cats):
        (tmp_path / "data_256" / c.lstrip("/")).mkdir(parents=True)
        for j in range(2):
            image_saver(tmp_path / "data_256" / c.lstrip("/") / f"{j:08d}.jpg", seed=i * 2 + j)
            train_lines.append(f"{c}/{j:08d}.jpg {i}")
    (tmp_path / "val_256").mkdir()
    for k in range(3):
        image_saver(tmp_path / "val_256" / f"Places365_val_{k + 1:08d}.jpg", seed=50 + k)
        val_lines.append(f"Places365_val_{k + 1:08d}.jpg {k}")
    (tmp_path / "val_256" / "Places365_val_00000004.jpg").write_bytes(b"\xff\xd8 truncated")
    val_lines.append("Places365_val_00000004.jpg 0")
    (tmp_path / "places365_train_standard.txt").write_text("\n".join(train_lines) + "\n")
    (tmp_path / "places365_val.txt").write_text("\n".join(val_lines) + "\n")
    return tmp_path


def test_places365_file_lists(places):
    assert detect_kind(places) == "places365"
    train = open_split(places, "train", SPEC)
    assert train.dataset.classes == ["/a/airfield", "/b/bakery", "/c/canyon"] and len(train) == 6
    xs, ys, skipped = collect(train)
    assert sorted(ys) == [0, 0, 1, 1, 2, 2] and skipped == 0
    val = open_split(places, "val", DataSpec(**{**SPEC.__dict__, "crops": 10}))
    xs, ys, skipped = collect(val)
    assert ys == [0, 1, 2] and skipped == 1 and xs[0].shape == (10, 3, 16, 16)
    assert read_categories(places / "categories_places365.txt")[1] == "/b/bakery"


def test_malformed_file_list_names_the_line(tmp_path):
    (tmp_path / "list.txt").write_text("a.jpg 1\nb.jpg\n")
    with pytest.raises(ValueError, match="list.txt:2"):
        file_list_samples(tmp_path / "list.txt", tmp_path)


def test_unrecognised_or_missing_data_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no data set recognised"):
        detect_kind(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        detect_kind(tmp_path / "missing")
    (tmp_path / "train" / "x").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="holds no images"):
        open_split(tmp_path, "train", SPEC)
