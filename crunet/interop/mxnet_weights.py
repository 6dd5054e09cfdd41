"""The authors' released MXNet CRU-Net checkpoints (``PREFIX-symbol.json`` + ``PREFIX-0000.params``), read with
numpy alone and mapped onto ``crunet56`` / ``crunet116``.

The ``.params`` file is MXNet's NDArray list (``NDArray::Save(stream, data, names)`` in ``src/ndarray/ndarray.cc``),
little-endian::

    uint64 0x112 (list magic), uint64 0 (reserved)
    uint64 count, then count arrays:
        uint32 magic: 0xF993FAC9 (v2) / 0xF993FACA (v3): int32 storage type (0 = dense), then the shape
                      0xF993FAC8 (v1): the shape
                      anything else (legacy): it is ndim, followed by ndim uint32 dims
        shape (v1-v3): int32 ndim, ndim int64 dims; ndim 0 (v1, v2) or -1 (v3) is an empty array, and ends it
        int32 device type, int32 device id
        int32 dtype: 0 float32, 1 float64, 2 float16, 3 uint8, 4 int32, 5 int8, 6 int64
        the values, C order
    uint64 count, then count names: uint64 length, UTF-8 bytes

``mx.model.save_checkpoint`` names parameters ``arg:NAME`` and BatchNorm statistics ``aux:NAME``. The symbol file
gives each BatchNorm's ``eps`` (default 1e-3) and ``fix_gamma`` (default True: MXNet then uses a scale of 1 and
ignores the stored gamma). The names the released files use for our parameters are in ``released_names``.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import torch
from torch import nn

from crunet.errors import FileFormatError

LIST_MAGIC = 0x112
V1_MAGIC, V2_MAGIC, V3_MAGIC = 0xF993FAC8, 0xF993FAC9, 0xF993FACA
MAX_CLASSES = 100_000
MAX_DIM = 1 << 24  # no released weight has a dimension near this; a larger one is a corrupt or hostile header
DTYPES = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32, 5: np.int8, 6: np.int64}
BN_NAMES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_var"}
RELEASED_MODELS = ("crunet56", "crunet116", "crunet56_136x1d")
MXNET_BN_EPS = 1e-3  # MXNet's BatchNorm default


class MXNetFormatError(FileFormatError):
    """A file that is not what an MXNet checkpoint should be, or does not fit the model."""


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def values(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise MXNetFormatError(f"{self.path} ends early (at byte {self.pos} of {len(self.data)}): truncated?")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def take(self, fmt: str):
        return self.values(fmt)[0]

    def array(self, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        count = int(np.prod(shape, dtype=np.int64))
        size = count * np.dtype(dtype).itemsize
        if self.pos + size > len(self.data):
            raise MXNetFormatError(f"{self.path} ends early (at byte {self.pos} of {len(self.data)}): truncated?")
        out = np.frombuffer(self.data, dtype=np.dtype(dtype).newbyteorder("<"), count=count, offset=self.pos)
        self.pos += size
        return out.reshape(shape).astype(dtype)  # a native-order copy that owns its memory


def read_ndarray_list(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The named arrays of an MXNet ``.params`` / ``nd.save`` file, in file order."""
    path = Path(path)
    if not path.is_file():
        raise MXNetFormatError(f"{path} does not exist")
    r = _Reader(path.read_bytes(), path)
    if len(r.data) < 16 or r.take("<Q") != LIST_MAGIC:
        raise MXNetFormatError(f"{path} is not an MXNet NDArray file (no 0x112 list header)")
    r.take("<Q")  # reserved
    arrays = [_read_ndarray(r) for _ in range(_count(r, "arrays"))]
    names = [_name(r) for _ in range(_count(r, "names"))]
    if len(names) != len(arrays):
        raise MXNetFormatError(f"{path} has {len(arrays)} arrays but {len(names)} names: "
                               f"an unnamed list cannot be mapped onto a model")
    if r.pos != len(r.data):
        raise MXNetFormatError(f"{path} has {len(r.data) - r.pos} bytes after its last name")
    return dict(zip(names, arrays, strict=True))


def _name(r: _Reader) -> str:
    raw = r.take(f"<{_count(r, 'name bytes')}s")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise MXNetFormatError(f"{r.path}: a parameter name is not UTF-8 text ({err.reason}): corrupt") from None


def _count(r: _Reader, what: str) -> int:
    n = r.take("<Q")
    if n > len(r.data):
        raise MXNetFormatError(f"{r.path}: implausible number of {what} ({n}); not an MXNet NDArray file")
    return n


def _read_ndarray(r: _Reader) -> np.ndarray:
    magic = r.take("<I")
    if magic in (V2_MAGIC, V3_MAGIC):
        stype = r.take("<i")
        if stype != 0:
            raise MXNetFormatError(f"{r.path}: sparse arrays (storage type {stype}) are not supported")
    if magic in (V1_MAGIC, V2_MAGIC, V3_MAGIC):
        ndim = r.take("<i")
        if ndim <= 0 and not (magic == V3_MAGIC and ndim == 0):
            return np.zeros((0,), np.float32)  # an empty (none) array: nothing follows
        shape = r.values(f"<{ndim}q")
    else:  # legacy: the magic is the number of dimensions, the dims are uint32
        if magic > 32:
            raise MXNetFormatError(f"{r.path}: unknown NDArray header 0x{magic:08X}; not an MXNet NDArray file")
        if magic == 0:
            return np.zeros((0,), np.float32)
        shape = r.values(f"<{magic}I")
    if any(d < 0 for d in shape):
        raise MXNetFormatError(f"{r.path}: array with an unknown dimension {shape}")
    if 0 in shape or any(d > MAX_DIM for d in shape):  # sizes are checked against the bytes, never trusted
        raise MXNetFormatError(f"{r.path}: array of shape {tuple(shape)} (empty or implausibly large): corrupt")
    r.take("<ii")  # the device it was saved from
    dtype_flag = r.take("<i")
    if dtype_flag not in DTYPES:
        raise MXNetFormatError(f"{r.path}: unsupported MXNet dtype flag {dtype_flag}")
    return r.array(DTYPES[dtype_flag], shape)


def read_symbol_batchnorms(path: str | os.PathLike) -> tuple[dict[str, dict], set[str]]:
    """From ``-symbol.json``: {gamma variable name: {"eps", "fix_gamma"}} of every BatchNorm, and the names of all
    variables (the parameters the network uses, plus its data and label inputs)."""
    path = Path(path)
    if not path.is_file():
        raise MXNetFormatError(f"{path} does not exist (the checkpoint's -symbol.json is needed beside the .params)")
    try:
        graph = json.loads(path.read_text())
        nodes = graph["nodes"]
    except (ValueError, KeyError, TypeError) as err:
        raise MXNetFormatError(f"{path} is not an MXNet symbol file: {err}") from err
    variables = {n["name"] for n in nodes if n.get("op") == "null"}
    norms = {}
    for node in nodes:
        if node.get("op") != "BatchNorm":
            continue
        attrs = node.get("attrs") or node.get("attr") or node.get("param") or {}
        inputs = [nodes[i[0]]["name"] for i in node.get("inputs", [])]
        gamma = inputs[1] if len(inputs) > 1 else f"{node['name']}_gamma"
        norms[gamma] = {"eps": float(attrs.get("eps", MXNET_BN_EPS)),
                        "fix_gamma": str(attrs.get("fix_gamma", "True")).lower() in ("true", "1")}
    return norms, variables


def read_checkpoint(prefix: str | os.PathLike, epoch: int = 0) -> tuple[dict[str, np.ndarray], dict[str, dict],
                                                                           set[str]]:
    """The parameters (``arg:``/``aux:`` prefixes removed), BatchNorm attributes and variable names of
    ``PREFIX-symbol.json`` + ``PREFIX-EPOCH.params``."""
    params_path = Path(f"{prefix}-{epoch:04d}.params")
    raw = read_ndarray_list(params_path)
    params = {}
    for key, value in raw.items():
        kind, _, name = key.rpartition(":")
        if kind not in ("", "arg", "aux"):
            raise MXNetFormatError(f"{params_path}: parameter {key!r} has an unknown prefix {kind!r}")
        if kind == "aux" and not name.endswith(("_moving_mean", "_moving_var")):
            raise MXNetFormatError(f"{params_path}: auxiliary state {key!r} is not a BatchNorm statistic")
        if name in params:
            raise MXNetFormatError(f"{params_path}: {name!r} appears twice")
        params[name] = value
    norms, variables = read_symbol_batchnorms(f"{prefix}-symbol.json")
    return params, norms, variables


def released_names(model: nn.Module) -> dict[str, str]:
    """Our state-dict key -> the released MXNet parameter name, for a CRU-Net built by crunet (``PreActResNet``).

    Stem ``conv1_x_1``, units ``conv{2..5}_x__{1..n}``, final BN ``conv5_x_x__relu-sp``, classifier ``fc6``. Inside a
    unit: ``c1x1-a`` (first 1x1), ``c3x3-b`` (grouped 3x3), ``c1x1-b`` (the CRU's extra 1x1), ``c1x1-c`` (last 1x1),
    ``c1x1-w(s/STRIDE)`` (projection shortcut). A CRU stage's shared factors are ``conv{s}_x__x_1x1_bases[dim3]`` and
    ``..._3x3_bases[dim21]`` (groups ``conv{s}_x__(1)``, ``(2)``, ... when a stage has several); its first unit's
    single projection weight is ``c1x1-w_weight``, with BNs ``c1x1-w(s/1)`` (input) and ``c1x1-w(s/key)``
    (shortcut). A BN-ReLU-conv called X has ``X__bn__bn_{gamma,beta,moving_mean,moving_var}`` and ``X__conv_weight``.
    """
    names: dict[str, str] = {}

    def bn(ours: str, theirs: str) -> None:
        for suffix, released in BN_NAMES.items():
            names[f"{ours}.{suffix}"] = f"{theirs}_{released}"

    def bn_conv(ours: str, theirs: str) -> None:
        bn(f"{ours}.norm.bn", f"{theirs}__bn__bn")
        names[f"{ours}.conv.weight"] = f"{theirs}__conv_weight"

    names["stem.0.weight"] = "conv1_x_1__conv_weight"
    bn("stem.1.bn", "conv1_x_1__relu-sp__bn")
    for i, stage in enumerate(model.stages):
        s = i + 2
        for k in range(len(stage.factors)):
            group = "x" if len(stage.factors) == 1 else f"({k + 1})"
            names[f"stages.{i}.factors.{k}.reduce"] = f"conv{s}_x__{group}_1x1_bases[dim3]_weight"
            names[f"stages.{i}.factors.{k}.spatial"] = f"conv{s}_x__{group}_3x3_bases[dim21]_weight"
        for j, unit in enumerate(stage.units):
            ours, theirs = f"stages.{i}.units.{j}", f"conv{s}_x__{j + 1}"
            if unit.factors is None:
                bn_conv(f"{ours}.conv1", f"{theirs}_c1x1-a")
                bn_conv(f"{ours}.conv2", f"{theirs}_c3x3-b")
            else:
                bn(f"{ours}.norm1.bn", f"{theirs}_c1x1-a__bn__bn")
            if unit.conv_mix is not None:
                bn_conv(f"{ours}.conv_mix", f"{theirs}_c1x1-b")
            bn_conv(f"{ours}.conv3", f"{theirs}_c1x1-c")
            if unit.shortcut is not None:
                bn_conv(f"{ours}.shortcut", f"{theirs}_c1x1-w(s/{unit.stride})")
            if unit.proj is not None:
                names[f"{ours}.proj"] = f"{theirs}_c1x1-w_weight"
                bn(f"{ours}.proj_in_norm.bn", f"{theirs}_c1x1-w(s/1)__bn__bn")
                bn(f"{ours}.proj_short_norm.bn", f"{theirs}_c1x1-w(s/key)__bn__bn")
    bn("final_norm.bn", f"conv{len(model.stages) + 1}_x_x__relu-sp__bn")
    names["head.fc.weight"], names["head.fc.bias"] = "fc6_weight", "fc6_bias"
    return names


def convert_checkpoint(prefix: str | os.PathLike, model_name: str, epoch: int = 0) -> nn.Module:
    """A crunet model holding the released weights, in eval mode; MXNetFormatError naming every name or shape
    that does not fit."""
    from crunet.models import create_model

    if model_name not in RELEASED_MODELS:
        raise MXNetFormatError(f"the released MXNet checkpoints are CRU-Nets: --model must be one of "
                               f"{', '.join(RELEASED_MODELS)}, got {model_name!r}")
    params, norms, variables = read_checkpoint(prefix, epoch)
    if "fc6_weight" not in params:
        raise MXNetFormatError(f"{prefix}-{epoch:04d}.params has no fc6_weight: not a released CRU-Net checkpoint")
    fc = params["fc6_weight"]
    num_classes = int(fc.shape[0]) if fc.ndim in (2, 4) else 0
    bias = params.get("fc6_bias")
    if not 0 < num_classes <= MAX_CLASSES or (bias is not None and tuple(bias.shape) != (num_classes,)):
        raise MXNetFormatError(f"{prefix}-{epoch:04d}.params: fc6_weight {tuple(fc.shape)} and fc6_bias "
                               f"{None if bias is None else tuple(bias.shape)} do not describe a classifier of "
                               f"1..{MAX_CLASSES} classes")
    model = create_model(model_name, num_classes=num_classes)
    _check_batchnorms(norms, model, prefix)
    names = released_names(model)
    _check_names(params, set(names.values()), variables, model_name, prefix)
    state = model.state_dict()
    wrong = []
    for ours, theirs in names.items():
        value = params[theirs]
        if ours == "head.fc.weight" and value.ndim == 4 and value.shape[2:] == (1, 1):  # fc6 as a 1x1 convolution
            value = value.reshape(value.shape[:2])
        if tuple(value.shape) != tuple(state[ours].shape):
            wrong.append(f"{theirs} {tuple(value.shape)} -> {ours} {tuple(state[ours].shape)}")
            continue
        if theirs.endswith("_gamma") and norms.get(theirs, {}).get("fix_gamma"):
            value = np.ones_like(value)  # MXNet ignores a fixed gamma and uses 1
        state[ours] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    if wrong:
        raise MXNetFormatError(f"{prefix} does not fit {model_name}: {len(wrong)} shape(s) differ: "
                               f"{'; '.join(wrong[:4])}{' ...' if len(wrong) > 4 else ''}")
    model.load_state_dict(state, strict=True)
    return model.eval()


def _check_names(params: dict, expected: set[str], variables: set[str], model_name: str, prefix) -> None:
    missing = sorted(expected - params.keys())
    unexpected = sorted(params.keys() - expected)
    absent = sorted((expected & params.keys()) - variables) if variables else []
    problems = [f"{label} ({len(keys)}): {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
                for label, keys in (("missing from the .params", missing),
                                    (f"in the .params but not part of {model_name}", unexpected),
                                    ("in the .params but not in the -symbol.json", absent)) if keys]
    if problems:
        raise MXNetFormatError(f"{prefix} does not fit {model_name}: " + "; ".join(problems))


def _check_batchnorms(norms: dict[str, dict], model: nn.Module, prefix) -> None:
    eps = {m.eps for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    theirs = {round(n["eps"], 12) for n in norms.values()}
    if theirs and theirs != {round(e, 12) for e in eps}:
        raise MXNetFormatError(f"{prefix}: the file's BatchNorms use eps {sorted(theirs)}, the model "
                               f"{sorted(eps)}; create the model with bn_eps= to match")
