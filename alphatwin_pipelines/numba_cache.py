"""Where numba keeps compiled kernels, set once where a process starts.

vectorbt's ``@njit(cache=True)`` kernels load from ``NUMBA_CACHE_DIR`` in later processes
instead of compiling again (see benchmarks/bench_backtests.py for the cold and warm figures).
Importing a module must not change the process, so nothing calls this at import time: the
entry points do (the Dagster storage resource when a run's step starts, the benchmarks, the
test session).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from alphatwin_pipelines.data_dir import state_dir

NUMBA_CACHE_ENV = "NUMBA_CACHE_DIR"


def configure_numba_cache(data_dir: str | os.PathLike | None = None) -> Path:
    """Default ``NUMBA_CACHE_DIR`` to ``<data dir>/.numba_cache`` if unset; return the cache dir.

    Run it before numba is imported (numba reads the variable once). If numba was already
    imported, its config is reloaded, but functions already decorated by an imported vectorbt
    keep their old cache location.
    """
    current = os.environ.get(NUMBA_CACHE_ENV)
    if current:
        return Path(current)
    path = state_dir(data_dir) / ".numba_cache"
    os.environ[NUMBA_CACHE_ENV] = str(path)
    if "numba" in sys.modules:
        sys.modules["numba"].core.config.reload_config()
    return path
