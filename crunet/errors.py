"""crunet's own error types, at the bottom of the layering (imports nothing from crunet).

Every error a user can cause (a bad option, a file that lies, a broken data set) is a ``CrunetError``: the command
line prints its message as one line and exits with status 2. Anything else is a bug and keeps its traceback. Each
type also derives from ``ValueError``, the exception Python, PyTorch and torchvision raise for a bad argument value
(``torchvision.models.get_model("nope")`` is a ValueError too), so ``except ValueError`` written against the older
contract keeps working; an unknown keyword option is also a ``TypeError``, as for any Python call.
"""

from __future__ import annotations


class CrunetError(ValueError):
    """A mistake the user can fix; the message is one line that says what is wrong and how to fix it."""


class ConfigError(CrunetError):
    """An option out of range, not finite, or inconsistent with another option."""


class UnknownOptionError(ConfigError, TypeError):
    """A keyword option a model or function does not have (Python raises TypeError for an unexpected keyword)."""


class DataError(CrunetError):
    """A data set that cannot be used: missing files, mismatched classes, labels out of range, corrupt files."""


class MissingFileError(CrunetError, FileNotFoundError):
    """A file or folder the user named (or the default place of a data set) is not there; also a FileNotFoundError."""


class FileFormatError(CrunetError):
    """A weights or data file whose bytes are not what its format promises (truncated, foreign, lying sizes)."""


class UnsupportedError(CrunetError):
    """An operation crunet deliberately does not support; the message names what to use instead."""
