"""The scan on a real process-based Dask LocalCluster equals the in-process scan, for any shard count."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")

from alphatwin_pipelines.scanner import scan  # noqa: E402
from alphatwin_pipelines.scanner import dask_runner  # noqa: E402
from alphatwin_pipelines.scanner.dask_runner import connect, local_cluster, run_scan  # noqa: E402

FRAMES = ("signals", "symbol_context", "sector_rotation", "top_pairs")
N_SYMBOLS, N_SESSIONS = 200, 330


def _cleaned(n_symbols: int = N_SYMBOLS, n_sessions: int = N_SESSIONS, seed: int = 11):
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2021-01-04", periods=n_sessions).astype("datetime64[ns]")
    sectors = ["Energy", "Financials", "Health", "Industrials", "Tech"]
    factor = rng.normal(0, 0.007, n_sessions)
    frames = []
    for i in range(n_symbols):
        close = 40 * np.exp(np.cumsum(factor + rng.normal(0.0002, 0.016, n_sessions)))
        spread = np.abs(rng.normal(0.005, 0.002, n_sessions))
        volume = rng.lognormal(13, 0.45, n_sessions).round()
        frames.append(pd.DataFrame({
            "symbol": f"S{i:04d}", "date": dates, "open": close, "high": close * (1 + spread),
            "low": close * (1 - spread), "close": close, "volume": volume.astype(np.int64),
        }))
    cleaned = pd.concat(frames, ignore_index=True)
    cleaned["dividend"], cleaned["split_ratio"], cleaned["source"] = 0.0, 1.0, "test"
    for col in ("open", "high", "low", "close"):
        cleaned[f"adj_{col}"] = cleaned[col]
    cleaned["adj_volume"] = cleaned["volume"].astype(np.float64)
    cleaned["flags"] = ""
    symbols = [f"S{i:04d}" for i in range(n_symbols)]
    universe = pd.DataFrame({"symbol": symbols, "sector": [sectors[i % 5] for i in range(n_symbols)], "name": symbols})
    return cleaned.astype({"symbol": "string", "source": "string"}), universe.astype("string")


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(n_workers=2, threads_per_worker=1) as cluster:
        assert isinstance(cluster, distributed.LocalCluster)
        yield cluster


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster) as client:
        client.wait_for_workers(2)
        yield client


@pytest.fixture(scope="module")
def data():
    return _cleaned()


@pytest.fixture(scope="module")
def reference(data):
    cleaned, universe = data
    return scan(cleaned, universe, sessions=_sessions(cleaned))


def _sessions(cleaned):
    return np.unique(cleaned["date"].to_numpy())[-40:]


def _assert_same(a, b):
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True, obj=name)
    assert a.summary == b.summary


def test_cluster_has_two_process_workers(client):
    workers = client.scheduler_info(n_workers=-1)["workers"]
    assert len(workers) == 2
    assert all(w["nthreads"] == 1 for w in workers.values())
    pids = set(client.run(lambda: __import__("os").getpid()).values())
    assert len(pids) == 2 and __import__("os").getpid() not in pids


def _page_faults_of_churn(n_arrays: int = 200, size: int = 2**20) -> tuple[dict, int]:
    """Allocate, fill and free ``n_arrays`` 1 MiB arrays; the minor page faults that cost."""
    import os
    import resource

    env = {k: os.environ.get(k) for k in dask_runner.WORKER_MALLOC}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n_arrays):
        np.ones(size // 8)
    return env, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_workers_reuse_freed_memory_instead_of_faulting_it_in_again(client):
    """Dask's default environment would map and unmap each 1 MiB array: 256 faults each."""
    client.run(_page_faults_of_churn)  # the heap grows once
    for env, faults in client.run(_page_faults_of_churn).values():
        assert env == dask_runner.WORKER_MALLOC
        assert faults < 200 * 256 // 20, faults


def test_scheduler_and_workers_tick_at_the_local_cluster_rates(client):
    """Measured on the servers themselves: each started with LOCAL_CLUSTER_CONFIG in force."""
    def rates(dask_worker=None, dask_scheduler=None):
        server = dask_worker or dask_scheduler
        return server._tick_interval, server.periodic_callbacks["monitor"].callback_time

    for tick, monitor in [*client.run(rates).values(), client.run_on_scheduler(rates)]:
        assert (tick, monitor) == (0.5, 1000)


def test_dask_equals_in_process(client, data, reference):
    cleaned, universe = data
    result = run_scan(cleaned, universe, _sessions(cleaned), client=client)
    assert result.summary["symbols_scanned"] == N_SYMBOLS
    assert len(result.signals) > 1000 and len(result.top_pairs) == 40 * 25
    _assert_same(result, reference)


@pytest.mark.parametrize("n_shards", [1, 3, 8, 31])
def test_shard_count_does_not_change_results(client, data, reference, n_shards):
    cleaned, universe = data
    _assert_same(run_scan(cleaned, universe, _sessions(cleaned), client=client, n_shards=n_shards), reference)


@pytest.mark.parametrize("groups_per_worker", [1, 7, 100])
def test_session_groups_ranked_on_workers_do_not_change_results(client, data, reference, groups_per_worker, monkeypatch):
    """1 group, uneven groups, and more groups (200) than sessions (40): the same frames."""
    monkeypatch.setattr(dask_runner, "RANK_GROUPS_PER_WORKER", groups_per_worker)
    cleaned, universe = data
    _assert_same(run_scan(cleaned, universe, _sessions(cleaned), client=client, n_shards=5), reference)


def test_without_client_runs_in_process(data, reference):
    cleaned, universe = data
    _assert_same(run_scan(cleaned, universe, _sessions(cleaned), client=None, n_shards=4), reference)


def test_connect_to_existing_scheduler(cluster, data):
    cleaned, universe = data
    client = connect(cluster.scheduler_address)
    try:
        assert client.scheduler.address == cluster.scheduler_address
        last = run_scan(cleaned, universe, None, client=client)
    finally:
        client.close()
    assert cluster.status.name == "running"  # closing a connected client leaves the cluster up
    assert (last.signals["date"] == cleaned["date"].max()).all()


def test_connect_without_address_starts_and_owns_a_local_cluster(data):
    cleaned, universe = data
    client = connect(None, n_workers=1)
    try:
        cluster = client.cluster
        assert isinstance(cluster, distributed.LocalCluster)
        assert len(client.scheduler_info(n_workers=-1)["workers"]) == 1
        result = run_scan(cleaned, universe, None, client=client)
        assert result.summary["symbols_scanned"] == N_SYMBOLS
    finally:
        client.close()
    assert cluster.status.name == "closed"
