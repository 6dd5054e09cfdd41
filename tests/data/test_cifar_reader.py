import pickletools

import numpy as np
import pytest
import torch

from crunet.data import check_augment, detect_kind
from crunet.data.cifar import read_class_names, read_split
from crunet.data.cifar_files import find_cifar
from crunet.data.classes import class_names
from crunet.errors import ConfigError
from tests.data.cifar_files import write_cifar_set

FORMATS = [(kind, binary, archive) for kind in ("cifar10", "cifar100") for binary in (False, True)
           for archive in (False, True)]


def _expected(arrays, coarse: bool = False):
    labels = arrays.coarse if coarse else arrays.labels
    return torch.from_numpy(arrays.images), torch.from_numpy(np.asarray(labels, dtype=np.int64))


@pytest.mark.parametrize(("kind", "binary", "archive"), FORMATS)
def test_every_image_label_and_class_name_reads_back(tmp_path, kind, binary, archive):
    written = write_cifar_set(tmp_path, kind, binary, archive)
    source = find_cifar(written.path)
    assert (source.layout.kind, source.layout.binary, source.archive) == (kind, binary, archive)
    for split, arrays in (("train", written.train), ("test", written.test)):
        got = read_split(source, split)
        images, labels = _expected(arrays)
        assert got.images.dtype == torch.uint8 and got.images.shape == (len(labels), 3, 32, 32)
        assert torch.equal(got.images, images) and torch.equal(got.labels, labels)
        assert got.classes == written.classes
    if kind == "cifar100":
        got = read_split(source, "test", "coarse")
        assert torch.equal(got.labels, _expected(written.test, coarse=True)[1])
        assert got.classes == written.coarse_classes == read_class_names(source, "coarse")


def test_a_binary_record_is_the_label_then_the_red_green_and_blue_planes(tmp_path):
    written = write_cifar_set(tmp_path, "cifar100", binary=True, n_test=3)
    data = (written.path / "test.bin").read_bytes()
    first = written.test
    assert len(data) == 3 * 3074
    assert data[0] == first.coarse[0] and data[1] == first.labels[0]
    assert data[2:2 + 1024] == first.images[0, 0].tobytes()  # red, row-major
    assert data[2 + 2048:3074] == first.images[0, 2].tobytes()  # blue last


def test_the_python_batches_have_the_originals_opcodes(tmp_path):
    written = write_cifar_set(tmp_path, "cifar10", n_train=10)
    data = (written.path / "data_batch_1").read_bytes()
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(data)]
    names = {name for name, _ in ops}
    assert ops[0] == ("PROTO", 2)
    assert {"SHORT_BINSTRING", "BINSTRING", "GLOBAL", "REDUCE", "BUILD", "BINPUT", "SETITEMS"} <= names
    assert not names & {"BINUNICODE", "SHORT_BINUNICODE", "BINBYTES", "SHORT_BINBYTES", "STACK_GLOBAL", "MEMOIZE"}
    assert ("GLOBAL", "numpy.core.multiarray _reconstruct") in ops and ("GLOBAL", "_codecs encode") not in ops
    raw = [arg for name, arg in ops if name == "BINSTRING"]  # the pixels: latin-1 text of the raw bytes
    assert raw == [written.train.images[:2].tobytes().decode("latin1")]
    # the same arrays give the same bytes (no dates, no ids): byte-exact fixtures
    again = write_cifar_set(tmp_path / "again", "cifar10", n_train=10)
    assert (again.path / "data_batch_1").read_bytes() == data


def test_archives_are_found_by_their_members_and_parents_by_their_one_data_set(tmp_path):
    archive = write_cifar_set(tmp_path / "a", "cifar100", binary=True, archive=True).path
    assert archive.name == "cifar-100-binary.tar.gz" and detect_kind(archive) == "cifar100"
    assert detect_kind(tmp_path / "a") == "cifar100"  # the parent of the archive
    folder = write_cifar_set(tmp_path / "a", "cifar10").path
    assert detect_kind(folder) == "cifar10"
    assert detect_kind(tmp_path / "a") == "cifar10"  # an extracted folder before an archive
    write_cifar_set(tmp_path / "a", "cifar10", binary=True)
    with pytest.raises(ConfigError, match="holds 2 CIFAR data sets"):
        detect_kind(tmp_path / "a")


def test_class_names_come_from_the_meta_files(tmp_path):
    written = write_cifar_set(tmp_path, "cifar100", archive=True)
    assert class_names(written.path) == written.classes
    assert class_names(written.path, cifar100_labels="coarse") == written.coarse_classes


def test_cifar_takes_the_light_augmentation_with_padding_and_not_rrc():
    assert check_augment("cifar10", "auto", 4) == "light"
    with pytest.raises(ConfigError, match="--augment rrc"):
        check_augment("cifar100", "rrc", 0)


def test_files_other_than_the_published_ones_get_one_note_not_an_error(tmp_path):
    written = write_cifar_set(tmp_path, "cifar10")
    notes = read_split(find_cifar(written.path), "test").notes
    assert len(notes) == 1 and "test_batch, batches.meta differ from the published CIFAR-10 files" in notes[0]
    assert read_split(find_cifar(write_cifar_set(tmp_path / "b", "cifar10", binary=True).path), "test").notes == []


def test_a_batch_pickled_by_python3_and_numpy2_reads_too(tmp_path):
    """numpy 2 names its rebuilder numpy._core.multiarray._reconstruct and Python 3 stores bytes through
    _codecs.encode: both admitted, so CIFAR-format data written today reads as the originals do."""
    import pickle

    written = write_cifar_set(tmp_path, "cifar10", n_train=5)
    batch = {"batch_label": "mine", "labels": [3], "data": written.train.images[:1].reshape(1, -1),
             "filenames": [b"a.png"]}
    data = pickle.dumps(batch, protocol=2)
    assert b"numpy._core.multiarray" in data and b"_codecs" in data
    (written.path / "data_batch_1").write_bytes(data)
    got = read_split(find_cifar(written.path), "train")
    assert torch.equal(got.images[0], torch.from_numpy(written.train.images[0])) and int(got.labels[0]) == 3
