"""crunet's own error types, at the bottom of the layering (imports nothing from crunet).

Every error a user can cause (a bad option, a file that lies, a broken data set) is a ``CrunetError``: the command
line prints its message as one line and exits with status 2. Each type also derives from ``ValueError`` so that
code written against the older ``ValueError`` contract keeps working.
"""

from __future__ import annotations


class CrunetError(ValueError):
    """A mistake the user can fix; the message is one line that says what is wrong and how to fix it."""


class ConfigError(CrunetError):
    """An option out of range, not finite, or inconsistent with another option."""


class DataError(CrunetError):
    """A data set that cannot be used: missing files, mismatched classes, labels out of range, corrupt files."""


class FileFormatError(CrunetError):
    """A weights or data file whose bytes are not what its format promises (truncated, foreign, lying sizes)."""


class UnsupportedError(CrunetError):
    """An operation crunet deliberately does not support; the message names what to use instead."""
