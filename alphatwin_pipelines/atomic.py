"""Atomic file replacement: a temporary file beside the target, then ``os.replace``.

A reader (or a crash) sees the old file or the new one, never half of one. Temporary files
are hidden (``.<name>.<random>.tmp``) so readers never match them, and a killed writer's
leftovers are removed by the next write of the same file. On an object store
(``objectstore``) the temporary file is local and the upload replaces the object whole.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    """Make renames in ``folder`` durable (the rename itself is already atomic)."""
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def temp_beside(path: Path, stale: Iterable[Path] | None = None) -> str:
    """A fresh hidden temporary file next to ``path`` (same filesystem, so ``os.replace`` is
    atomic); stale ones a killed writer left behind are removed first (``stale``, when the
    caller already listed them). Readers never match it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return _new_temp(path, _stale_temps(path) if stale is None else stale)


def _new_temp(path: Path, stale: Iterable[Path]) -> str:
    for old in stale:
        old.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return tmp


def atomic_write_bytes(path, write) -> None:
    """Call ``write(tmp_path)``, fsync the result, and move it onto ``path`` atomically.

    ``tmp_path`` is always a local file; for an object-store ``path`` it is uploaded whole."""
    from alphatwin_pipelines.objectstore import is_remote, put_file

    if is_remote(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            write(tmp)
            put_file(tmp, path)
        finally:
            os.unlink(tmp)
        return
    path = Path(path)
    tmp = temp_beside(path)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def _stale_temps(path: Path) -> list[Path]:
    return list(path.parent.glob(f".{path.name}.*.tmp"))


def _temps_by_target(folder: Path) -> dict[str, list[Path]]:
    """Every temporary file in ``folder`` by the name of the file it was meant to become.

    A batch lists each folder once: globbing per file rescans a folder that fills up with the
    batch's own temporaries, quadratic in the files written (seconds for a 1,258-file backfill).
    """
    found: dict[str, list[Path]] = {}
    if folder.is_dir():
        for entry in os.scandir(folder):
            if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.name.count(".") >= 3:
                found.setdefault(entry.name[1:].rsplit(".", 2)[0], []).append(Path(entry.path))
    return found
