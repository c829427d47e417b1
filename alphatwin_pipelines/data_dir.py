"""Where the data lives: the one place ``ALPHATWIN_DATA_DIR`` and ``ALPHATWIN_STATE_DIR`` are read.

The data directory holds every table, report, card and model artifact. It is a local folder or
an object-store prefix (``s3://bucket/prefix``, see ``objectstore``), which every service and Dask
worker can share without a shared volume.

The state directory holds what only makes sense on a local disk: the SQLite databases used when no
server URL is set (Optuna's studies, MLflow's tracking store, the paper ledger), numba's compiled
kernels, the drop folder and the run-failure log. With a local data directory it is that same
folder (nothing moves); with a remote one it is ``ALPHATWIN_STATE_DIR``, else a folder per data
directory under ``~/.cache/alphatwin``. Deployments that share a remote data directory set server
URLs for the databases (docker-compose does), so no process depends on another's state directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from alphatwin_pipelines.objectstore import is_remote, remote_root

DATA_DIR_ENV = "ALPHATWIN_DATA_DIR"
STATE_DIR_ENV = "ALPHATWIN_STATE_DIR"
#: The repository's ``data/`` (what the Makefile exports), wherever the process was started from.
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / "data"


def resolve_data_dir(data_dir: str | os.PathLike | None = None):
    """The data directory: ``data_dir`` when given, else ``ALPHATWIN_DATA_DIR``, else
    ``DEFAULT_DATA_DIR``. A local folder comes back as an absolute ``Path``; ``s3://bucket/prefix``
    as the object store's ``UPath`` (``objectstore``)."""
    value = data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    if is_remote(value):
        return value if not isinstance(value, str) else remote_root(value)
    if isinstance(value, str) and value.startswith("file://"):
        value = value[len("file://"):]
    return Path(value).resolve()


def state_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The local state directory for ``data_dir`` (see the module docstring)."""
    root = resolve_data_dir(data_dir)
    if not is_remote(root):
        return root
    explicit = os.environ.get(STATE_DIR_ENV)
    path = Path(explicit).resolve() if explicit else Path.home() / ".cache" / "alphatwin" / str(root).replace("://", "/")
    path.mkdir(parents=True, exist_ok=True)  # SQLite creates a database file, not its folder
    return path
