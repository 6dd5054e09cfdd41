"""The weight readers against bytes that lie: random, mutated and hand-made hostile files. Only crunet's own error
types escape (FileFormatError: MXNetFormatError, WeightsError, CheckpointError), in bounded time and memory: sizes
read from a file are checked against its bytes and its tensors before anything is allocated or built."""

import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crunet.errors import FileFormatError
from crunet.interop.mxnet_weights import LIST_MAGIC, V2_MAGIC, convert_checkpoint, read_ndarray_list
from crunet.interop.weights import read_safetensors, read_weights, save_weights

DATA = Path(__file__).with_name("data")
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _bounded(read, path, limit=64 << 20):
    """``read(path)`` must return or raise FileFormatError, allocating at most ``limit`` bytes of Python memory."""
    tracemalloc.start()
    try:
        read(path)
    except FileFormatError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < limit, f"{peak} bytes allocated reading {path.stat().st_size} bytes"


def _mutate(data: bytes, edits) -> bytes:
    out = bytearray(data)
    for pos, value in edits:
        if out:
            out[pos % len(out)] = value
    return bytes(out)


@FUZZ
@given(st.binary(max_size=600))
def test_mxnet_reader_random_bytes(tmp_path, data):
    path = tmp_path / "x.params"
    path.write_bytes(data)
    _bounded(read_ndarray_list, path)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=8),
       st.integers(0, 4000))
def test_mxnet_reader_mutated_real_file(tmp_path, edits, cut):
    real = (DATA / "tiny-0000.params").read_bytes()
    path = tmp_path / "x.params"
    path.write_bytes(_mutate(real, edits)[: len(real) - cut % len(real)])
    _bounded(read_ndarray_list, path)


@FUZZ
@given(st.binary(max_size=600))
def test_safetensors_reader_random_bytes(tmp_path, data):
    path = tmp_path / "x.safetensors"
    path.write_bytes(data)
    _bounded(read_safetensors, path)


@pytest.fixture(scope="module")
def real_safetensors(tmp_path_factory):
    import crunet

    path = tmp_path_factory.mktemp("st") / "m.safetensors"
    save_weights(crunet.create_model("crunet_small", num_classes=10, in_chans=1), path)
    return path.read_bytes()


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=8))
def test_safetensors_reader_mutated_real_file(tmp_path, real_safetensors, edits):
    header = struct.unpack("<Q", real_safetensors[:8])[0] + 8  # aim the edits at the header
    path = tmp_path / "x.safetensors"
    path.write_bytes(_mutate(real_safetensors, [(p % header, v) for p, v in edits]))
    _bounded(lambda p: read_weights(p), path)


def test_safetensors_metadata_that_lies_about_the_classes_is_refused_before_a_model_is_built(tmp_path):
    from safetensors.torch import save_file

    import crunet

    model = crunet.create_model("crunet_small", num_classes=10, in_chans=1)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp_path / "lie.safetensors"),
              metadata={"format": "crunet-weights-v1", "model": "crunet_small", "num_classes": "100000000",
                        "in_chans": "1"})
    with pytest.raises(FileFormatError, match="num_classes 100000000 .the tensors say 10"):
        read_weights(tmp_path / "lie.safetensors")


@pytest.mark.parametrize("key, value, message", [
    ("classes", '{"0": "cat"}', "classes metadata is not a JSON list"),
    ("classes", "[cat", "classes metadata is not JSON"),
    ("model_kwargs", "[1]", "model_kwargs metadata is not a JSON object")])
def test_safetensors_json_metadata_of_the_wrong_kind_is_one_readable_error(tmp_path, key, value, message):
    from safetensors.torch import save_file

    import crunet

    model = crunet.create_model("crunet_small", num_classes=10, in_chans=1)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "odd.safetensors"),
              metadata={"format": "crunet-weights-v1", "model": "crunet_small", key: value})
    with pytest.raises(FileFormatError, match=message):
        read_weights(tmp_path / "odd.safetensors")


def test_a_tiny_mxnet_file_declaring_a_giant_classifier_is_refused(tmp_path):
    """~100 bytes declaring fc6_weight of shape (10^8, 0): never a 10^8-class model."""
    body = struct.pack("<QQQ", LIST_MAGIC, 0, 1) + struct.pack("<Iii", V2_MAGIC, 0, 2) + \
        struct.pack("<qq", 10**8, 0) + struct.pack("<iii", 1, 0, 0)
    name = b"arg:fc6_weight"
    (tmp_path / "m-0000.params").write_bytes(body + struct.pack("<QQ", 1, len(name)) + name)
    (tmp_path / "m-symbol.json").write_text('{"nodes": [], "heads": []}')
    assert len((tmp_path / "m-0000.params").read_bytes()) < 120
    with pytest.raises(FileFormatError, match="shape"):
        read_ndarray_list(tmp_path / "m-0000.params")
    with pytest.raises(FileFormatError):
        convert_checkpoint(tmp_path / "m", "crunet56")


def test_the_real_files_still_read():
    arrays = read_ndarray_list(DATA / "tiny-0000.params")
    assert arrays and all(isinstance(a, np.ndarray) and a.size for a in arrays.values())
    assert torch.is_tensor(torch.from_numpy(next(iter(arrays.values()))))
