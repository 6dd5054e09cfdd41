"""Where a CIFAR data set's files are: its four published layouts (CIFAR-10 / CIFAR-100, python / binary), found in
an extracted folder, a ``.tar.gz`` as downloaded (read member by member, never extracted to disk), or a parent
folder holding exactly one of them; and the bytes of the files a split needs."""

from __future__ import annotations

import os
import posixpath
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from crunet.errors import ConfigError, FileFormatError, MissingFileError

MAX_MEMBER_BYTES = 1 << 30  # the largest CIFAR file is 155 MB; a member declaring more is a lie (or a bomb)
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


@dataclass(frozen=True)
class Layout:
    """One of the four published layouts: its data kind, its format and the files of each split."""

    kind: str  # cifar10 or cifar100
    binary: bool  # records of label byte(s) + 3072 pixels; else Python 2 pickles
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: tuple[str, ...]  # the class names: a pickle (python) or one text file per label set (binary)

    @property
    def name(self) -> str:
        return f"{'CIFAR-10' if self.kind == 'cifar10' else 'CIFAR-100'} {'binary' if self.binary else 'python'}"

    @property
    def files(self) -> tuple[str, ...]:
        return self.train + self.test + self.meta


LAYOUTS = (  # in the order they are recognised: each by any one of its files
    Layout("cifar10", True, tuple(f"data_batch_{i}.bin" for i in range(1, 6)), ("test_batch.bin",),
           ("batches.meta.txt",)),
    Layout("cifar100", True, ("train.bin",), ("test.bin",), ("fine_label_names.txt", "coarse_label_names.txt")),
    Layout("cifar10", False, tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), ("batches.meta",)),
    Layout("cifar100", False, ("train",), ("test",), ("meta",)),
)


@dataclass(frozen=True)
class CifarSource:
    """A CIFAR data set as the user has it: ``path`` is its folder or its archive."""

    path: Path
    layout: Layout
    archive: bool

    def read(self, names: tuple[str, ...]) -> dict[str, bytes]:
        """The bytes of each file in ``names``; a missing one is a MissingFileError naming it and the layout."""
        found = _read_archive(self.path, set(names)) if self.archive else _read_folder(self.path, names)
        missing = [n for n in names if n not in found]
        if missing:
            raise MissingFileError(f"{self.path}: {', '.join(missing)} missing; {self.layout.name} holds "
                                   f"{', '.join(self.layout.files)} (download it again)")
        return found

    def label(self, name: str) -> str:
        """How messages name one of its files."""
        return f"{self.path}:{name}" if self.archive else str(self.path / name)


def match_layout(names) -> Layout | None:
    names = set(names)
    return next((layout for layout in LAYOUTS if names & set(layout.files)), None)


def find_cifar(root: str | os.PathLike) -> CifarSource | None:
    """The CIFAR data set at ``root`` (its folder, its archive, or a folder holding exactly one of them; an
    extracted folder before an archive), or None when ``root`` holds none."""
    root = Path(root)
    if root.is_file():
        return _archive_source(root) if is_archive(root) else None
    if not root.is_dir():
        return None
    layout = _folder_layout(root)
    if layout:
        return CifarSource(root, layout, False)
    children = sorted(root.iterdir())
    folders = [CifarSource(p, layout, False) for p in children if p.is_dir() and (layout := _folder_layout(p))]
    archives = [_archive_source(p) for p in children
                if p.is_file() and is_archive(p) and p.name.lower().startswith("cifar")]
    for found in (folders, archives):
        if len(found) > 1:
            names = ", ".join(s.path.name for s in found)
            raise ConfigError(f"--data {root} holds {len(found)} CIFAR data sets ({names}): pass the one to use as "
                              f"--data")
        if found:
            return found[0]
    return None


def _folder_layout(folder: Path) -> Layout | None:
    return match_layout(p.name for p in folder.iterdir() if p.is_file())


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _archive_source(path: Path) -> CifarSource:
    """The layout of an archive, from the names of its first members (read up to the first CIFAR file)."""
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                layout = match_layout([posixpath.basename(member.name)]) if member.isfile() else None
                if layout:
                    return CifarSource(path, layout, True)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise _broken_archive(path, err) from None
    raise FileFormatError(f"{path} holds no CIFAR files (data_batch_1, train.bin, ...): not a CIFAR-10 or CIFAR-100 "
                          f"archive")


def _read_archive(path: Path, wanted: set[str]) -> dict[str, bytes]:
    """The members named in ``wanted`` (by base name), in one pass over the compressed stream."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                name = posixpath.basename(member.name)
                if name not in wanted or name in found or not member.isfile():
                    continue
                if member.size > MAX_MEMBER_BYTES:
                    raise FileFormatError(f"{path}:{name} declares {member.size:,} bytes, more than any CIFAR file; "
                                          f"corrupt or not CIFAR")
                data = tar.extractfile(member).read()
                if len(data) != member.size:
                    raise FileFormatError(f"{path}:{name} is truncated ({len(data):,} of {member.size:,} bytes): "
                                          f"download the archive again")
                found[name] = data
                if len(found) == len(wanted):
                    break
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise _broken_archive(path, err) from None
    return found


def _read_folder(root: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    found = {}
    for name in names:
        if (root / name).is_file():
            if (root / name).stat().st_size > MAX_MEMBER_BYTES:
                raise FileFormatError(f"{root / name} is larger than any CIFAR file: corrupt or not CIFAR")
            found[name] = (root / name).read_bytes()
    return found


def _broken_archive(path: Path, err: Exception) -> FileFormatError:
    return FileFormatError(f"{path} is truncated or not a tar archive ({type(err).__name__}: "
                           f"{str(err) or 'no detail'}): download it again")
