"""Run workers forked from a process that has the code location loaded, not started from scratch.

A code server (the one `dagster dev` starts, or `dagster api grpc`) starts each run's worker with
multiprocessing's "spawn": a fresh interpreter that imports Dagster and loads definitions.py again
before the run's first event (~4 s of CPU here, most of it ``import dagster_dbt`` through
assets/marts.py). Every run launched from the UI or by a schedule, sensor or backfill pays it.

``install()`` (called by assets/instance.py, so in every Dagster process; it acts only in a code
server) makes the code server start run workers with multiprocessing's "forkserver" instead: when the
server starts, a server process is started that loads the same code location once, in the
background; each run worker is then a fork of it, with definitions.py and its imports already
loaded (Dagster's loader reuses a module already imported from the same file). The worker runs
Dagster's own function, with the same arguments, as before. Costs: the forkserver keeps a loaded
copy of the code location in memory while the code server runs (~330 MiB RSS, shared with the
workers it forks until they write to it) and loads it once per code server start, off the request
path. If loading fails there, the forkserver stays up and each worker loads the code itself, as
with spawn. ``ALPHATWIN_RUN_WORKER_START=spawn`` keeps Dagster's spawn.
"""

from __future__ import annotations

import multiprocessing
import os
import sys

# Read by the forkserver's preload (this module, imported there): the code location to load.
_TARGET = "ALPHATWIN_RUN_WORKER_TARGET"
SWITCH = "ALPHATWIN_RUN_WORKER_START"
_installed = False


def install() -> None:
    """Start run workers from the forkserver in this process's code server, if it is one (once)."""
    global _installed
    if _installed or os.environ.get(SWITCH, "forkserver") != "forkserver":
        return
    from dagster._grpc.server import DagsterApiServer

    original = DagsterApiServer._cleanup_thread

    def _cleanup_thread(self) -> None:
        # Dagster starts this thread at the end of DagsterApiServer.__init__, after loading the code;
        # the server's mp context is read by each StartRun.
        try:
            self._mp_ctx = forkserver_context(self._loadable_target_origin)
        except Exception as exc:  # noqa: BLE001 - spawn stays: slower run starts, nothing else changes
            print(f"assets/run_workers.py: run workers start with spawn, the forkserver did not start "
                  f"({type(exc).__name__}: {exc})", file=sys.stderr)
        original(self)

    DagsterApiServer._cleanup_thread = _cleanup_thread
    _installed = True


def forkserver_context(origin):
    """The "forkserver" context, its server started now and loading ``origin``'s code."""
    context = multiprocessing.get_context("forkserver")
    if origin is None or not (origin.python_file or origin.module_name):
        return context
    context.set_forkserver_preload([__name__])
    os.environ[_TARGET] = repr((origin.python_file, origin.module_name, origin.working_directory))
    try:
        from multiprocessing import forkserver

        forkserver.ensure_running()  # starts the server process; it loads the code in the background
    finally:
        os.environ.pop(_TARGET, None)
    return context


def _preload() -> None:
    """In the forkserver: load the code location as the run worker would (same module name, same file)."""
    import ast

    python_file, module_name, working_directory = ast.literal_eval(os.environ.pop(_TARGET))
    try:
        if python_file:
            from dagster._core.code_pointer import load_python_file

            load_python_file(python_file, working_directory)
        else:
            from dagster._core.code_pointer import load_python_module

            load_python_module(module_name, working_directory)
    except Exception as exc:  # noqa: BLE001 - each run worker will load the code itself and report the error
        print(f"assets/run_workers.py: the forkserver could not preload {python_file or module_name} "
              f"({type(exc).__name__}: {exc}); each run worker loads it itself", file=sys.stderr)


if _TARGET in os.environ and multiprocessing.parent_process() is None:
    _preload()
