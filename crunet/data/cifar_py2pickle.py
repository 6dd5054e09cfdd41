"""Pickles as Python 2's cPickle wrote the CIFAR python batches (protocol 2): strings as byte strings
(SHORT_BINSTRING, BINSTRING), numpy arrays through ``numpy.core.multiarray._reconstruct``, every string, tuple,
list, dict and global memoized (BINPUT, from 1 as cPickle counts), lists and dicts in batches of 1,000.

Python 3's pickle cannot write these: it stores bytes through ``_codecs.encode`` and strings as unicode, so a
look-alike written with it would not exercise what a reader of the real files meets."""

from __future__ import annotations

import struct

import numpy as np

BATCH = 1000  # cPickle's BATCHSIZE: items per MARK ... APPENDS / SETITEMS


class Global:
    """A reference to module.name (the GLOBAL opcode)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name


def py2_pickle(obj) -> bytes:
    """``obj`` (dicts, lists, tuples, str or bytes as byte strings, ints, bools, None, uint8 numpy arrays) pickled
    as ``cPickle.dumps(obj, 2)`` did."""
    writer = _Writer()
    writer.out.append(b"\x80\x02")
    writer.save(obj)
    writer.out.append(b".")
    return b"".join(writer.out)


class _Writer:
    def __init__(self):
        self.out: list[bytes] = []
        self.memo: dict[object, int] = {}

    def put(self, key) -> None:
        self.memo[key] = index = len(self.memo) + 1
        self.out.append(b"q" + bytes([index]) if index < 256 else b"r" + struct.pack("<I", index))

    def save(self, obj) -> None:
        if obj is None:
            self.out.append(b"N")
        elif isinstance(obj, bool):
            self.out.append(b"\x88" if obj else b"\x89")
        elif isinstance(obj, (int, np.integer)):
            self._int(int(obj))
        elif isinstance(obj, (str, bytes)):
            data = obj.encode("latin1") if isinstance(obj, str) else obj
            self.out.append(b"U" + bytes([len(data)]) + data if len(data) < 256
                            else b"T" + struct.pack("<i", len(data)) + data)
            self.put(("str", len(self.memo)))
        elif isinstance(obj, Global):
            key = ("global", obj.module, obj.name)
            if key in self.memo:
                index = self.memo[key]
                self.out.append(b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index))
                return
            self.out.append(b"c" + obj.module.encode() + b"\n" + obj.name.encode() + b"\n")
            self.put(key)
        elif isinstance(obj, tuple):
            self._tuple(obj)
        elif isinstance(obj, list):
            self.out.append(b"]")
            self.put(("list", id(obj)))
            self._batched(obj, b"e", self.save)
        elif isinstance(obj, dict):
            self.out.append(b"}")
            self.put(("dict", id(obj)))
            self._batched(list(obj.items()), b"u", lambda kv: (self.save(kv[0]), self.save(kv[1])))
        elif isinstance(obj, np.ndarray):
            self._array(obj)
        else:
            raise TypeError(f"py2_pickle: cannot write {type(obj).__name__}")

    def _int(self, value: int) -> None:
        if 0 <= value < 256:
            self.out.append(b"K" + bytes([value]))
        elif 0 <= value < 65536:
            self.out.append(b"M" + struct.pack("<H", value))
        else:
            self.out.append(b"J" + struct.pack("<i", value))

    def _tuple(self, items: tuple) -> None:
        if not items:
            self.out.append(b")")
            return
        if len(items) > 3:
            self.out.append(b"(")
        for item in items:
            self.save(item)
        self.out.append(b"t" if len(items) > 3 else b"\x85\x86\x87"[len(items) - 1:len(items)])
        self.put(("tuple", len(self.memo)))

    def _batched(self, items: list, closer: bytes, save_item) -> None:
        for start in range(0, len(items), BATCH):
            chunk = items[start:start + BATCH]
            if len(chunk) > 1:
                self.out.append(b"(")
            for item in chunk:
                save_item(item)
            # cPickle writes a lone item with APPEND / SETITEM
            self.out.append(closer if len(chunk) > 1 else {b"e": b"a", b"u": b"s"}[closer])

    def _array(self, array: np.ndarray) -> None:
        """numpy's own reduction: _reconstruct(ndarray, (0,), 'b'), then BUILD with (1, shape, dtype, fortran,
        raw bytes); the dtype as dtype('u1', 0, 1) BUILT with its version-3 state."""
        if array.dtype != np.uint8:
            raise TypeError(f"py2_pickle: only uint8 arrays, got {array.dtype}")
        self.save(Global("numpy.core.multiarray", "_reconstruct"))
        self.save((Global("numpy", "ndarray"), (0,), b"b"))
        self.out.append(b"R")
        self.put(("reduce", len(self.memo)))
        self.out.append(b"(")  # the state: (1, shape, dtype, fortran, raw bytes), the dtype written inline
        self.save(1)
        self.save(tuple(array.shape))
        self.save(Global("numpy", "dtype"))
        self.save((b"u1", 0, 1))
        self.out.append(b"R")
        self.put(("reduce", len(self.memo)))
        self.save((3, b"|", None, None, None, -1, -1, 0))
        self.out.append(b"b")
        self.save(False)
        self.save(np.ascontiguousarray(array).tobytes())
        self.out.append(b"t")
        self.put(("tuple", len(self.memo)))
        self.out.append(b"b")
