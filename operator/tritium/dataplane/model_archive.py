"""Unpacking a fetched model file into a model directory, safely.

A model stored as one object (the only layout plain HTTP servers can offer, and a convenient one
for buckets) is either an archive of the model directory or a single model file. Archives come
from outside the cluster, so members that would land outside the target are refused rather than
trusted.
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
# A single non-archive file becomes version 1 of the model (Triton needs a version directory).
SINGLE_FILE_VERSION = "1"


class ArchiveError(Exception):
    """An archive that cannot be unpacked safely (corrupt, or members escaping the target)."""


def archive_kind(name: str) -> str | None:
    """The archive suffix a file name ends with, or None for a plain file."""
    lower = name.lower()
    return next((s for s in ARCHIVE_SUFFIXES if lower.endswith(s)), None)


def _unpack_tar(src: Path, dest: Path) -> None:
    try:
        with tarfile.open(src) as tar:
            # The "data" filter refuses absolute paths, "..", links out of dest and device files.
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise ArchiveError(f"cannot unpack {src.name}: {exc}") from None


def _unpack_zip(src: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(src) as zf:
            for member in zf.namelist():
                parts = PurePosixPath(member).parts
                if member.startswith("/") or ".." in parts:
                    raise ArchiveError(f"{src.name}: member {member!r} would land outside the model directory")
            zf.extractall(dest)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError(f"cannot unpack {src.name}: {exc}") from None


def _strip_wrapper(dest: Path) -> None:
    """Archives made with ``tar czf m.tgz mymodel/`` wrap the model in one directory: drop it.

    A lone numeric directory is a model version, not a wrapper, and is kept.
    """
    entries = list(dest.iterdir())
    if len(entries) != 1 or not entries[0].is_dir() or entries[0].name.isdigit():
        return
    wrapper = entries[0]
    tmp = dest / f".{wrapper.name}.unwrap"
    wrapper.rename(tmp)
    for child in tmp.iterdir():
        child.rename(dest / child.name)
    tmp.rmdir()


def install_file(src: Path, dest: Path, name: str) -> None:
    """Place a fetched single object into the (existing, empty) model directory ``dest``.

    ``name`` is the object's original file name: its suffix decides archive or plain file.
    """
    kind = archive_kind(name)
    if kind == ".zip":
        _unpack_zip(src, dest)
    elif kind is not None:
        _unpack_tar(src, dest)
    else:
        version_dir = dest / SINGLE_FILE_VERSION
        version_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, version_dir / name)
        return
    _strip_wrapper(dest)
