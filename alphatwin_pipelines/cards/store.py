"""Card files under the data directory: one immutable folder per strategy version.

``<data_dir>/cards/<strategy_id>/<version>/`` where ``version`` is the first 16 hex digits of
the sha256 over the folder's file names and contents. A version that exists already has the
same content by construction, so it is never rewritten; a new version is written into a
hidden temporary folder beside it and renamed into place, so a reader sees all of it or none.

An object store has no folders to rename: there each file is uploaded whole, then the marker
object ``_complete.json`` (each file's sha256) last, and a version without its marker is absent
(``version_complete``): a writer killed half-way leaves one that the next run writes again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from alphatwin_pipelines.atomic import atomic_write_bytes, fsync_dir
from alphatwin_pipelines.data_dir import resolve_data_dir
from alphatwin_pipelines.objectstore import is_remote

CARDS_DIR = "cards"
#: On an object store, the object written last into a version: without it the version is absent.
COMPLETE = "_complete.json"


def content_version(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()[:16]


def version_complete(folder) -> bool:
    """Whether a version's folder holds all of it (readers treat any other as absent)."""
    return (folder / COMPLETE).exists() if is_remote(folder) else folder.is_dir()


def write_version(data_dir, strategy_id: str, files: dict[str, bytes]) -> tuple[Path, bool]:
    """``(folder, created)``: the version's folder, and whether this call wrote it."""
    parent = resolve_data_dir(data_dir) / CARDS_DIR / strategy_id
    folder = parent / content_version(files)
    if version_complete(folder):
        return folder, False
    if is_remote(folder):
        marker = json.dumps({name: hashlib.sha256(files[name]).hexdigest() for name in sorted(files)}, indent=1)
        for name, data in [*files.items(), (COMPLETE, marker.encode())]:
            atomic_write_bytes(folder / name, lambda tmp, data=data: Path(tmp).write_bytes(data))
        return folder, True
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=parent))
    try:
        for name, data in files.items():
            with open(tmp / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        os.rename(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if folder.is_dir():  # a concurrent writer renamed the same version first: same content
            return folder, False
        raise
    fsync_dir(parent)
    return folder, True
