"""Card files under the data directory: one immutable folder per strategy version.

``<data_dir>/cards/<strategy_id>/<version>/`` where ``version`` is the first 16 hex digits of
the sha256 over the folder's file names and contents. A version that exists already has the
same content by construction, so it is never rewritten; a new version is written into a
hidden temporary folder beside it and renamed into place, so a reader sees all of it or none.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from alphatwin_pipelines.atomic import fsync_dir

CARDS_DIR = "cards"


def content_version(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()[:16]


def write_version(data_dir, strategy_id: str, files: dict[str, bytes]) -> tuple[Path, bool]:
    """``(folder, created)``: the version's folder, and whether this call wrote it."""
    parent = Path(data_dir) / CARDS_DIR / strategy_id
    folder = parent / content_version(files)
    if folder.is_dir():
        return folder, False
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
