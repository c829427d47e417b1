"""Run the scan on a Dask ``distributed`` cluster: symbol shards, then session groups, as tasks.

The driver prepares the bars and sends them out as ~3 × n_workers symbol shards, with a
``shard_returns`` and a ``scan_shard`` task each. Everything after stays on the workers: each
shard's hits are cut by session group and every group is ranked and named there
(``ranking``); the shards' returns are merged on a worker, and the cross-asset context
(60-session correlations and the N×N top-pairs matrix, the costly bit of a backfill) is
mapped over session chunks, which start as soon as the returns are merged. Only finished
signal frames and context rows come back, as ``PackedFrame``s: the driver shares the machine's
cores. Every task is a pure function of its inputs, so the result equals ``scan.scan``
exactly, whatever the shard count."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from operator import getitem

import numpy as np
import pandas as pd

from alphatwin_pipelines.cluster import n_workers as count_workers
from alphatwin_pipelines.scanner.cross_asset import (ReturnsPanel, context_frames, merge_returns, sector_rotation,
                                                     session_chunks, session_context)
from alphatwin_pipelines.scanner.packed import PackedFrame, concat_packed
from alphatwin_pipelines.scanner.ranking import RawHits, ranked_signals, session_groups, split_by_session
from alphatwin_pipelines.scanner.scan import (ScanResult, ShardCounts, ShardResult, assemble, make_shards, prepare, scan,
                                              scan_shard, shard_returns, symbol_names)
from alphatwin_pipelines.scanner.signals import ScanConfig

SHARDS_PER_WORKER = 3
#: Session groups ranked per worker: a few per worker keep both busy to the end.
RANK_GROUPS_PER_WORKER = 2
#: Context chunks fetched per round trip (40 chunks in a 5-year backfill).
CONTEXT_GATHER_BATCH = 8
#: Task priorities (higher first). The shards' returns are a small part of the work and unblock
#: the context; the signals and their ranking come next, so finished groups reach the caller
#: early; the context chunks fill every gap, e.g. while another worker ends its last shard.
RETURNS, SIGNALS, RANKING, CONTEXT = 3, 2, 1, 0
#: Dask config for local workers: the statistical profiler samples every thread's stack
#: while holding the GIL, which slows the context tasks.
WORKER_CONFIG = {"distributed": {"worker": {"profile": {"enabled": False}}}}
#: Dask config for local clusters, scheduler and workers alike: a slower event-loop health tick
#: (the value of Dask's own test suite) and system-metrics interval, because an idle cluster's
#: housekeeping otherwise takes CPU that a small machine pays during every run.
LOCAL_CLUSTER_CONFIG = {"distributed.admin.tick.interval": "500ms", "distributed.admin.system-monitor.interval": "1s"}
#: glibc malloc settings for local worker processes. Dask's own MALLOC_TRIM_THRESHOLD_ also
#: turns off glibc's adaptive mmap threshold, so every mid-sized array is mapped, unmapped when
#: freed and faulted in again page by page. Serving arrays from the heap and keeping some free
#: heap trades a little resident memory for most of those page faults.
WORKER_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(256 * 2**20)}


def local_cluster(n_workers: int | None = None, threads_per_worker: int = 1, memory_limit: str | int = "auto", **kwargs):
    """A process-based ``distributed.LocalCluster`` sized to the machine (one worker per CPU).

    The dashboard is off unless ``dashboard_address`` is passed and the scheduler's HTTP
    server takes a free port, so clusters started side by side never fight over port 8787.
    Workers start with ``WORKER_MALLOC`` in their environment.
    """
    import dask.config
    from distributed import LocalCluster

    if "dashboard_address" not in kwargs:
        # no dashboard; the scheduler's small HTTP server (health, metrics) on a free port
        kwargs["dashboard_address"] = None
        kwargs["scheduler_kwargs"] = {"dashboard_address": ":0", **kwargs.get("scheduler_kwargs", {})}
    kwargs.setdefault("silence_logs", logging.ERROR)
    with dask.config.set(LOCAL_CLUSTER_CONFIG):  # read once, when the scheduler and nannies start
        # the Nanny merges this over its own config one level deep only: pass whole sections
        kwargs["config"] = dask.config.merge({"distributed": dask.config.get("distributed")}, WORKER_CONFIG,
                                             kwargs.get("config", {}))
        return LocalCluster(
            n_workers=n_workers or os.cpu_count() or 1,
            threads_per_worker=threads_per_worker,
            processes=True,
            memory_limit=memory_limit,
            worker_class=_tuned_nanny(),
            **kwargs,
        )


@functools.cache
def _tuned_nanny():
    from distributed import Nanny

    class TunedMallocNanny(Nanny):
        """A Nanny that starts its worker process with ``WORKER_MALLOC`` set.

        glibc reads these variables once, at process start, so they must be in the
        environment the Nanny spawns with (Dask's ``pre-spawn-environ``). Set here rather than
        through that config key, which an earlier Nanny's own value left in ``os.environ``
        would silently override."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.pre_spawn_env.update(WORKER_MALLOC)
            self.env.update(WORKER_MALLOC)  # what the worker then sees in os.environ

    return TunedMallocNanny


def connect(address: str | None = None, **cluster_kwargs):
    """A ``distributed.Client``: to the scheduler at ``address``, else to a new local cluster.

    A client that started its own cluster closes it too when it is closed.
    """
    from distributed import Client

    if address:
        return Client(address)

    class _OwningClient(Client):
        def close(self, *args, **kwargs):
            cluster = self.cluster
            try:
                return super().close(*args, **kwargs)
            finally:
                if cluster is not None:
                    cluster.close()

    return _OwningClient(local_cluster(**cluster_kwargs))


def _direct(client) -> bool | None:
    """Move data straight between this process and the workers when the cluster is ours.

    Through the scheduler (Dask's default), a LocalCluster's scheduler thread relays every
    byte inside the driver process, several times slower than direct for a backfill's shard
    results. A remote scheduler keeps the default.
    """
    return True if getattr(client, "cluster", None) is not None else None


def run_scan(
    cleaned: pd.DataFrame,
    universe: pd.DataFrame | None,
    sessions=None,
    client=None,
    n_shards: int | None = None,
    config: ScanConfig | None = None,
    on_ranked: Callable[[pd.DataFrame, np.ndarray], None] | None = None,
) -> ScanResult:
    """``scan.scan`` with symbol shards as Dask tasks; ``client=None`` runs in-process.

    ``n_shards`` defaults to 3 × the cluster's workers (1 without a client). ``on_ranked``
    gets each session group's ranked signals in session order, while the workers still
    compute the cross-asset context.
    """
    config = config or ScanConfig()
    if client is None:
        return scan(cleaned, universe, sessions, config=config, n_shards=n_shards or 1, on_ranked=on_ranked)
    inputs = prepare(cleaned, universe, sessions)
    n_workers = count_workers(client)
    direct = _direct(client)
    panels, results = [], []
    for shard in make_shards(inputs.bars, n_shards or SHARDS_PER_WORKER * n_workers):
        # one shard at a time: the first shard's tasks run while the next ones are sent
        # hash=False: a random key, not a hash of every shard's bars
        bars = client.scatter(shard, direct=direct, hash=False)
        panels.append(client.submit(shard_returns, bars, inputs.context_start, priority=RETURNS, pure=False))
        results.append(client.submit(scan_shard, bars, inputs.sessions, config, priority=SIGNALS, pure=False))
    # Ranking compares hits of one session only: each shard's hits are cut by session group
    # and every group is ranked and named on a worker, so this process only concatenates.
    groups = session_groups(inputs.sessions, RANK_GROUPS_PER_WORKER * n_workers)
    pieces = client.map(_split_hits, results, groups=groups, priority=RANKING, pure=False)
    sectors = client.scatter(inputs.sectors, broadcast=True, direct=direct, hash=False)
    names = client.scatter(symbol_names(inputs), broadcast=True, direct=direct, hash=False)
    # named here, not on the driver: decoding a backfill's name columns on the driver takes CPU
    # from the workers' cores
    ranked = [client.submit(_packed_ranked_signals,
                            [client.submit(getitem, p, g, priority=RANKING, pure=False) for p in pieces],
                            sessions, names, sectors, priority=RANKING, pure=False)
              for g, sessions in enumerate(groups)]
    counts = [client.submit(_counts_of, r, priority=RANKING, pure=False) for r in results]
    # The context needs every symbol's returns: they are merged on a worker and never come here.
    returns = client.submit(merge_returns, panels, priority=RETURNS, pure=False)
    chunks = session_chunks(inputs.sessions, config.session_chunk)
    context = client.map(_packed_session_context, [returns] * len(chunks), [sectors] * len(chunks), chunks,
                         [config.top_k_pairs] * len(chunks), priority=CONTEXT, pure=False)
    rotation = client.submit(sector_rotation, returns, sectors, inputs.sessions, priority=CONTEXT, pure=False)
    del panels, results, pieces

    def rank() -> pd.DataFrame:
        frames = []
        for future, sessions in zip(ranked, groups):
            frames.append(client.gather(future, direct=direct).to_frame())
            if on_ranked is not None:
                on_ranked(frames[-1], sessions)
        return pd.concat(frames, ignore_index=True)

    def context_tables() -> dict[str, pd.DataFrame]:
        # a few chunks at a time in session order, each batch fetched as soon as it is done:
        # gathering all at once moves everything after the last task ended, and one round trip
        # per chunk costs the driver's event loop once per chunk
        chunks = [chunk for first in range(0, len(context), CONTEXT_GATHER_BATCH)
                  for chunk in client.gather(context[first : first + CONTEXT_GATHER_BATCH], direct=direct)]
        tables = [(concat_packed([c[0] for c in chunks]), concat_packed([c[1] for c in chunks]))] if chunks else []
        return context_frames(tables, client.gather(rotation, direct=direct))

    return assemble(inputs, rank, lambda: client.gather(counts, direct=direct), context_tables)


def _split_hits(result: ShardResult, groups) -> list[RawHits]:
    return split_by_session(RawHits(result.signals, result.evidence), groups)


def _packed_ranked_signals(pieces: list[RawHits], sessions, names, sectors) -> PackedFrame:
    return PackedFrame.from_frame(ranked_signals(pieces, sessions, names, sectors))


def _packed_session_context(returns: ReturnsPanel, sectors, sessions, top_k: int) -> tuple[PackedFrame, PackedFrame]:
    symbols, pairs = session_context(returns, sectors, sessions, top_k)
    return PackedFrame.from_frame(symbols), PackedFrame.from_frame(pairs)


def _counts_of(result: ShardResult) -> ShardCounts:
    return result.counts
