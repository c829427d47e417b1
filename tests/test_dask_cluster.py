"""The scanner and the feature stage on a real Dask cluster (``dask scheduler`` + two ``dask worker``
processes, as docker-compose runs them): the same tables as in process, also through the features
asset with ``ALPHATWIN_DASK_SCHEDULER`` set, and when a worker process is killed mid-stage."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.sources.synthetic import SyntheticSource
from alphatwin_pipelines.stages.features import feature_sessions
from alphatwin_pipelines.stages.scanner import OUTPUT_TABLES, scan_sessions
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import FEATURES
from tests.dask_support import REPO_ROOT, cli_cluster, killing_a_worker
from tests.fixtures.research import build_cleaned
from tests.quality_support import range_tags

pytestmark = pytest.mark.slow  # a cluster of three processes

HISTORY = sessions_between("2022-01-03", "2022-12-30")
SCANNED = HISTORY[-30:]
FEATURED = HISTORY[-40:]  # with the longest lookback before them: every session of HISTORY is read


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with cli_cluster(tmp_path_factory.mktemp("dask")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def client(cluster):
    return cluster.client


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> TableStore:
    store = TableStore(tmp_path_factory.mktemp("cluster_data"))
    build_cleaned(store, SyntheticSource(n_symbols=30), HISTORY)
    return store


def _tables(store: TableStore, tables, sessions) -> dict[str, pd.DataFrame]:
    return {table: store.read_partitions(table, sessions[0], sessions[-1]) for table in tables}


def _assert_same(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for table, frame in expected.items():
        assert len(frame) > 0, table
        pd.testing.assert_frame_equal(got[table], frame, check_exact=True, obj=table)


@pytest.fixture(scope="module")
def in_process_features(store) -> dict:
    feature_sessions(store, FEATURED)
    return _tables(store, [FEATURES], FEATURED)


def test_workers_are_two_cli_processes_importing_this_checkout(cluster, client):
    import os

    import alphatwin_pipelines

    workers = client.scheduler_info(n_workers=-1)["workers"]
    assert sorted(w["name"] for w in workers.values()) == ["dask-worker-1", "dask-worker-2"]
    assert all(w["nthreads"] == 1 for w in workers.values())
    pids = set(client.run(os.getpid).values())
    assert len(pids) == 2 and os.getpid() not in pids
    homes = client.run(lambda: __import__("alphatwin_pipelines").__file__)
    assert set(homes.values()) == {alphatwin_pipelines.__file__} and alphatwin_pipelines.__file__.startswith(str(REPO_ROOT))
    assert os.environ["ALPHATWIN_DASK_SCHEDULER"] == cluster.address


def test_workers_run_with_the_local_clusters_malloc_and_without_the_profiler(client):
    import os

    import dask.config

    from alphatwin_pipelines.scanner.dask_runner import WORKER_CONFIG, WORKER_MALLOC

    malloc = client.run(lambda: {key: os.environ.get(key) for key in WORKER_MALLOC})
    assert list(malloc.values()) == [WORKER_MALLOC] * 2
    profiler = client.run(lambda: dask.config.get("distributed.worker.profile.enabled"))
    assert list(profiler.values()) == [WORKER_CONFIG["distributed"]["worker"]["profile"]["enabled"]] * 2


def test_scanner_on_the_cluster_writes_the_in_process_tables(store, client):
    scan_sessions(store, SCANNED)
    expected = _tables(store, OUTPUT_TABLES, SCANNED)
    scan_sessions(store, SCANNED, client=client)
    _assert_same(_tables(store, OUTPUT_TABLES, SCANNED), expected)


def test_features_in_symbol_shards_on_the_cluster_equal_in_process(store, client, in_process_features):
    feature_sessions(store, FEATURED, client=client)
    _assert_same(_tables(store, [FEATURES], FEATURED), in_process_features)


def test_features_asset_runs_on_the_configured_scheduler_twice_to_the_same_table(store, cluster, in_process_features):
    from assets.features import features
    from assets.resources import DaskResource, StorageResource, env_or

    # as default_resources builds it: ALPHATWIN_DASK_SCHEDULER, read when the run starts (dask_workers shows it was)
    resources = {"storage": StorageResource(data_dir=str(store.data_dir)),
                 "dask": DaskResource(scheduler_address=env_or("ALPHATWIN_DASK_SCHEDULER", None))}
    for _ in range(2):
        with dg.DagsterInstance.ephemeral() as instance:
            result = dg.materialize([features], resources=resources, instance=instance,
                                    tags=range_tags(f"{FEATURED[-10]:%Y-%m-%d}", f"{FEATURED[-1]:%Y-%m-%d}"))
        assert result.success
        assert result.asset_materializations_for_node(FEATURES)[-1].metadata["dask_workers"].value == 2
        _assert_same(_tables(store, [FEATURES], FEATURED), in_process_features)


def test_a_worker_killed_mid_stage_changes_no_feature(store, client, in_process_features):
    with killing_a_worker(client, "features-") as killed:
        feature_sessions(store, FEATURED, client=client)
    assert killed["held"]  # the dead worker held feature tasks; they were computed again elsewhere
    _assert_same(_tables(store, [FEATURES], FEATURED), in_process_features)


def test_run_tasks_keeps_the_order_of_items_and_raises_a_failure(client):
    import operator

    from alphatwin_pipelines.cluster import run_tasks

    seen = []
    got = run_tasks(operator.mul, range(12), client, shared=3, name="mul", on_result=lambda i, r: seen.append((i, r)))
    assert got == [3 * i for i in range(12)] == run_tasks(operator.mul, range(12), None, shared=3)
    assert sorted(seen) == list(enumerate(got))
    with pytest.raises(ZeroDivisionError):
        run_tasks(operator.truediv, [3, 2, 0, 1], client, shared=1.0)



def test_run_tasks_held_keeps_results_on_the_workers_and_hands_them_to_later_tasks(client):
    import operator

    from distributed import Future

    from alphatwin_pipelines.cluster import run_tasks, run_tasks_held

    seen = []  # builtins only: the scheduler cannot import a test module
    summaries, held = run_tasks_held(bytes, range(1, 9), client, summary=len, name="block",
                                     on_result=lambda i, s: seen.append((i, s)))
    local_summaries, local = run_tasks_held(bytes, range(1, 9), None, summary=len)
    assert summaries == local_summaries == list(range(1, 9)) and sorted(seen) == list(enumerate(summaries))
    assert all(isinstance(h, Future) for h in held)  # only the summaries came here
    assert local == [bytes(n) for n in range(1, 9)]
    # A later task receives the held result itself, inside a tuple item, as in process.
    second = operator.itemgetter(1)
    assert run_tasks(second, [("x", h) for h in held], client) == run_tasks(second, [("x", r) for r in local]) == local
    with pytest.raises(ZeroDivisionError):
        run_tasks_held(operator.truediv, [1, 0], client, summary=abs, shared=1.0)
