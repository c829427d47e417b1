"""What ``cluster.run_tasks`` does around the tasks on a real process-based LocalCluster: ``after``
runs in every worker when the tasks end (``release_caches`` there empties every copy of a shared
cache, whatever keeps it alive), and each task hands the heap pages it freed back to the system,
which a plain Dask task does not."""

from __future__ import annotations

import ctypes
import functools
import gc
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import psutil
import pytest

distributed = pytest.importorskip("distributed")

from alphatwin_pipelines.cluster import run_tasks  # noqa: E402
from alphatwin_pipelines.scanner.dask_runner import local_cluster  # noqa: E402
from alphatwin_pipelines.strategies.families import Indicators, release_caches  # noqa: E402
from tests.test_prefix_indicators import gappy_market  # noqa: E402

pytestmark = pytest.mark.slow  # a cluster of three processes

#: the heap tests need glibc's malloc_trim (Linux); elsewhere trim_heap is a no-op
glibc_only = pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "malloc_trim"), reason="no glibc malloc_trim here")

BLOCK = 8192  # float64s: 64 KB, under glibc's mmap threshold, so the blocks come from the heap
N_BLOCKS = 4000  # 256 MB


@pytest.fixture(scope="module")
def client():
    with local_cluster(n_workers=2, threads_per_worker=1) as cluster, distributed.Client(cluster) as client:
        client.wait_for_workers(2)
        yield client


KEPT: list = []  # per process: shared caches kept alive past their tasks, as Dask's own references can


def _fill(shared: Indicators, window: int) -> int:
    shared.sma(window)
    KEPT.append(shared)
    return os.getpid()


def _cached_mb() -> float:
    return sum(o.nbytes() for o in gc.get_objects() if isinstance(o, Indicators)) / 2**20


def _pid(item: int) -> int:
    return os.getpid()


def _mark(folder: Path) -> None:
    (folder / str(os.getpid())).touch()


def test_after_runs_once_in_every_worker_when_the_tasks_end(client, tmp_path):
    ran_on = set(run_tasks(_pid, range(2), client, after=functools.partial(_mark, tmp_path)))
    marked = sorted(int(mark.name) for mark in tmp_path.iterdir())
    assert ran_on <= set(client.run(os.getpid).values())
    assert marked == sorted(client.run(os.getpid).values())  # also a worker that ran no task


def test_in_process_after_runs_once_here(tmp_path):
    assert run_tasks(_pid, range(3), after=functools.partial(_mark, tmp_path)) == [os.getpid()] * 3
    assert [mark.name for mark in tmp_path.iterdir()] == [str(os.getpid())]


def test_release_caches_empties_every_workers_copy_of_a_shared_cache(client):
    market = gappy_market(n_sessions=2000, n_symbols=50)
    windows = range(5, 45)
    run_tasks(_fill, windows, client, shared=Indicators(market))
    filled = client.run(_cached_mb)
    run_tasks(_fill, windows, client, shared=Indicators(market), after=release_caches)
    assert sum(filled.values()) >= len(windows) * market.close.nbytes / 2**20  # every window, on some worker
    assert client.run(_cached_mb) == dict.fromkeys(filled, 0.0)  # both runs' copies, whatever holds them


PINNED: list = []  # per process: the blocks _heap_churn keeps


def _heap_churn(seed: int) -> float:
    """Allocate 256 MB in heap-sized blocks and free all but the last, kept in this process, which
    pins the heap's top: glibc cannot shrink the heap past it, so the freed pages stay resident
    unless trimmed."""
    blocks = [np.full(BLOCK, float(seed + i)) for i in range(N_BLOCKS)]
    PINNED.append(blocks[-1])
    return float(blocks[-1][0])


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


@glibc_only
def test_a_task_gives_the_heap_it_freed_back_where_a_plain_dask_task_does_not(client):
    workers_mb = lambda: sum(client.run(_rss_mb).values())  # noqa: E731

    before = workers_mb()
    assert client.submit(_heap_churn, 1, pure=False).result() == N_BLOCKS
    grown_plain = workers_mb() - before

    before = workers_mb()
    [kept] = run_tasks(_heap_churn, [2], client)
    grown = workers_mb() - before
    assert kept == N_BLOCKS + 1
    assert grown_plain > 200, f"the plain task left {grown_plain:.0f} MB: the test no longer pins the heap"
    assert grown < 64, f"run_tasks' task left {grown:.0f} MB resident"


@glibc_only
def test_trim_heap_returns_freed_pages_in_this_process():
    script = textwrap.dedent(f"""
        import numpy as np, psutil
        from alphatwin_pipelines.cluster import trim_heap
        rss = lambda: psutil.Process().memory_info().rss / 2**20
        start = rss()
        blocks = [np.full({BLOCK}, 1.0) for _ in range({N_BLOCKS})]
        keep = blocks[-1]
        del blocks
        freed = rss()
        trim_heap()
        print(start, freed, rss())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    start, freed, trimmed = map(float, out.split())
    assert freed - start > 200, out  # freed but still resident
    assert trimmed - start < 64, out
