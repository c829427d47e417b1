"""assets/instance.py: the instance's storage class brings the launch fixes to processes that load no code.

A UI backfill is launched by the webserver (GraphQL mutation) and its run is created by the daemon;
neither loads definitions.py. Here a child process plays both (Dagster's own mutation and backfill
daemon iteration) on an instance read from the repository's dagster.yaml or dagster.postgres.yaml,
with a small session-partitioned code location in its own gRPC server, and reports what was stored.
The canary pins the Dagster internals the patches replace or rely on.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO_ROOT
from tests.postgres_support import INSTANCE_YAML, PG_HOST, PG_PASSWORD, PG_PORT, PG_USER, pg_db  # noqa: F401

LOCATION = textwrap.dedent("""
    import dagster as dg
    from assets.partitions import session_partitions

    parts = session_partitions("2024-01-02")
    policy = dg.BackfillPolicy.single_run()

    @dg.asset(partitions_def=parts, backfill_policy=policy)
    def first() -> None:
        pass

    @dg.asset(partitions_def=parts, backfill_policy=policy, deps=[first],
              check_specs=[dg.AssetCheckSpec("positive", asset="second")])
    def second():
        yield dg.MaterializeResult()
        yield dg.AssetCheckResult(passed=True)

    defs = dg.Definitions(assets=[first, second])
""")

# The webserver's launch mutation, then the backfill daemon's iterations until the run exists.
UI_BACKFILL = textwrap.dedent("""
    import json, logging, sys
    import dagster as dg
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import PythonFileTarget
    from dagster._daemon.backfill import execute_backfill_iteration
    from dagster_graphql.test.utils import execute_dagster_graphql

    location, start, end = sys.argv[1:4]
    MUTATION = '''mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
        __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }'''
    params = {"partitionsByAssets": [{"assetKey": {"path": [name]}, "partitions": {"range": {"start": start, "end": end}}}
                                     for name in ("first", "second")]}
    instance = dg.DagsterInstance.get()
    target = PythonFileTarget(python_file=location, attribute=None, working_directory=".", location_name="tiny")
    with WorkspaceProcessContext(instance, target) as workspace:
        result = execute_dagster_graphql(workspace.create_request_context(), MUTATION, {"params": params})
        assert result.data["launchPartitionBackfill"]["__typename"] == "LaunchBackfillSuccess", result
        for _ in range(3):
            list(execute_backfill_iteration(workspace, logging.getLogger("backfill")))
            if instance.get_runs():
                break
    run, = instance.get_runs()
    keys = lambda data: data.partitions_subset.get_partition_keys() if data.partitions_subset else [data.partition]
    planned = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED).records
    check_rows = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("second"), "positive"), limit=100)
    print("RESULT", json.dumps({
        "storage": type(instance.get_ref().storage_data.rehydrate()).__module__,
        "code_loaded_here": "definitions" in sys.modules,
        "backfill_poll_s": sys.modules["dagster._daemon.controller"].DEFAULT_DAEMON_INTERVAL_SECONDS,
        "range": [run.tags.get("dagster/asset_partition_range_start"), run.tags.get("dagster/asset_partition_range_end")],
        "planned": sorted((r.asset_key.path[-1], sorted(keys(r.event_log_entry.dagster_event.event_specific_data)))
                          for r in planned),
        "check_rows": [(r.status.value, r.partition) for r in check_rows]}))
""")


def _ui_backfill(tmp_path, env: dict) -> dict:
    location = tmp_path / "tiny_location.py"
    location.write_text(LOCATION)
    proc = subprocess.run([sys.executable, "-c", UI_BACKFILL, str(location), "2024-01-02", "2024-01-16"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def _stock_free_env(home) -> dict:
    # Only the instance may set Dagster's switches: a variable left over from the caller would hide a miss.
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS",
                                                           "DAGSTER_EVENT_BATCH_SIZE")}
    return {**env, "DAGSTER_HOME": str(home)}


def _assert_one_planned_row_each(got: dict) -> None:
    sessions = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09", "2024-01-10",
                "2024-01-11", "2024-01-12", "2024-01-16"]  # 2024-01-15: Martin Luther King Jr. Day
    from assets.instance import BACKFILL_POLL_SECONDS

    assert got["storage"] == "assets.instance" and not got["code_loaded_here"]
    assert got["backfill_poll_s"] == BACKFILL_POLL_SECONDS  # Dagster's: 30 s
    assert got["range"] == ["2024-01-02", "2024-01-16"]
    # One planned event per asset holding the run's sessions (stock: one per asset and session) ...
    assert got["planned"] == [["first", sessions], ["second", sessions]]
    # ... and one planned row for the unpartitioned check (stock: one per session, never resolved).
    assert got["check_rows"] == [["PLANNED", None]]


@pytest.mark.filterwarnings("ignore::dagster.BetaWarning")
def test_ui_backfill_on_the_sqlite_instance_plans_once_per_asset_and_check(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    _assert_one_planned_row_each(_ui_backfill(tmp_path, _stock_free_env(home)))


@pytest.mark.filterwarnings("ignore::dagster.BetaWarning")
def test_ui_backfill_on_the_postgres_instance_plans_once_per_asset_and_check(tmp_path, pg_db):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(INSTANCE_YAML, home / "dagster.yaml")
    env = {**_stock_free_env(home), "DAGSTER_PG_HOST": PG_HOST, "DAGSTER_PG_PORT": str(PG_PORT),
           "DAGSTER_PG_USER": PG_USER, "DAGSTER_PG_PASSWORD": PG_PASSWORD or "unused-under-trust-auth",
           "DAGSTER_PG_DB": pg_db}
    _assert_one_planned_row_each(_ui_backfill(tmp_path, env))


def test_a_process_without_the_repository_on_its_path_is_told_what_is_missing(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {**_stock_free_env(home), "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, "-c", "import dagster; dagster.DagsterInstance.get()"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Couldn't import module assets.instance" in proc.stderr


# The backfill daemon's loop starting on the tiny location's workspace: what its warm-up walked.
DAEMON_WARMUP = textwrap.dedent("""
    import json, sys, threading
    import dagster as dg
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import PythonFileTarget
    from dagster._daemon.daemon import BackfillDaemon

    instance = dg.DagsterInstance.get()
    from assets import partition_walks

    target = PythonFileTarget(python_file=sys.argv[1], attribute=None, working_directory=".", location_name="tiny")
    with WorkspaceProcessContext(instance, target) as workspace:
        shutdown = threading.Event()
        shutdown.set()
        next(BackfillDaemon(settings={}).core_loop(workspace, shutdown), None)
        for thread in threading.enumerate():
            if thread.name == "partition-walk-warmup":
                thread.join(120)
        walked = [len(walk.windows) for walk in partition_walks._walks.values()]
        sessions = workspace.create_request_context().asset_graph.get(dg.AssetKey("first")).partitions_def.get_num_partitions()
    print("RESULT", json.dumps({"walked": walked, "sessions": sessions, "code_loaded_here": "tiny_location" in sys.modules}))
""")


def test_the_backfill_daemon_walks_the_session_calendar_when_it_starts(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    location = tmp_path / "tiny_location.py"
    location.write_text(LOCATION)
    proc = subprocess.run([sys.executable, "-c", DAEMON_WARMUP, str(location)], cwd=REPO_ROOT,
                          env=_stock_free_env(home), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    got = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT ")).removeprefix("RESULT "))
    # One shared walk (both assets' definitions are equal), already past every session the daemon will ask about.
    assert len(got["walked"]) == 1 and got["walked"][0] >= got["sessions"] > 700 and not got["code_loaded_here"]


# The backfill daemon's wait between two looks, while the webserver's mutation adds a backfill.
WAKEUP = textwrap.dedent("""
    import json, sys, threading, time
    import dagster as dg
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import PythonFileTarget
    from dagster_graphql.test.utils import execute_dagster_graphql

    instance = dg.DagsterInstance.get()
    from assets.instance import WakeOnNewBackfill

    MUTATION = '''mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
        __typename } }'''
    params = {"partitionsByAssets": [{"assetKey": {"path": ["first"]},
                                      "partitions": {"range": {"start": "2024-01-02", "end": "2024-01-05"}}}]}
    target = PythonFileTarget(python_file=sys.argv[1], attribute=None, working_directory=".", location_name="tiny")
    with WorkspaceProcessContext(instance, target) as workspace:
        event = WakeOnNewBackfill(threading.Event(), instance)
        event.mark()
        launch = threading.Timer(1.0, execute_dagster_graphql,
                                 (workspace.create_request_context(), MUTATION, {"params": params}))
        launch.start()
        started = time.monotonic()
        shutdown = event.wait(600)
        waited = time.monotonic() - started
        launch.join()
    print("RESULT", json.dumps({"shutdown": shutdown, "before_timeout": waited < 600,
                                "backfills": instance.get_backfills_count()}))
""")


def test_the_backfill_daemon_looks_as_soon_as_a_backfill_is_added(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    location = tmp_path / "tiny_location.py"
    location.write_text(LOCATION)
    proc = subprocess.run([sys.executable, "-c", WAKEUP, str(location)], cwd=REPO_ROOT, env=_stock_free_env(home),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    got = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT ")).removeprefix("RESULT "))
    # The wait ended for the new backfill (not for a shutdown, not at its 600 s timeout).
    assert got == {"shutdown": False, "before_timeout": True, "backfills": 1}


# Questions the launch asks about the session partitions, answered by Dagster's walk, then (on a fresh,
# equal definition) by the shared one: 9/11, Hurricane Sandy and a leap day are in the range.
WALK_ANSWERS = textwrap.dedent("""
    import json, sys
    from dagster._core.definitions.partitions.partition_key_range import PartitionKeyRange
    from dagster._core.definitions.partitions.utils.time_window import TimeWindow
    from assets.partitions import session_partitions

    def answers(parts):
        keys = parts.get_partition_keys()
        window = TimeWindow(parts.time_window_for_partition_key("2001-09-10").end,
                            parts.time_window_for_partition_key("2001-09-17").start)
        return {"count": parts.get_num_partitions(), "keys": keys,
                "range": list(parts.get_partition_keys_in_range(PartitionKeyRange("2012-10-26", "2012-11-02"))),
                "valid": [parts.has_partition_key(k) for k in ("2001-09-11", "2012-10-29", "2020-02-28", "2024-02-29")],
                "next": [parts.get_next_partition_key(k) for k in ("2001-09-10", "2012-10-26", "2020-02-28")],
                "gap_has_partitions": parts.has_any_partitions_in_window(window),
                "merged": [[(w.start.isoformat(), w.end.isoformat()) for w in subset.included_time_windows],
                           len(subset)] if (subset := parts.empty_subset().with_partition_keys(
                    [*parts.get_partition_keys_in_range(PartitionKeyRange("2000-01-03", "2001-09-20")),
                     *parts.get_partition_keys_in_range(PartitionKeyRange("2001-09-24", "2012-11-02")),
                     *parts.get_partition_keys_in_range(PartitionKeyRange("2012-11-06", "2024-12-31"))]))
                else None,
                "last": parts.get_last_partition_key()}

    stock = answers(session_partitions("2000-01-03"))
    from assets import partition_walks
    partition_walks.install()
    print("RESULT", json.dumps({"stock": stock, "shared": answers(session_partitions("2000-01-03")),
                                "again": answers(session_partitions("2000-01-03"))}))
""")


def test_shared_partition_walks_answer_as_dagsters_own():
    proc = subprocess.run([sys.executable, "-c", WALK_ANSWERS], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT ")).removeprefix("RESULT "))
    assert got["shared"] == got["stock"] == got["again"]
    assert got["stock"]["valid"] == [False, False, True, True] and not got["stock"]["gap_has_partitions"]
    assert got["stock"]["count"] == len(got["stock"]["keys"]) > 6000
    # Three windows: weekends, holidays and the 9/11 and Sandy closures inside each range merge into it;
    # the sessions skipped between the ranges (2001-09-21, 2012-11-05) keep them apart.
    assert len(got["stock"]["merged"][0]) == 3


# What each patched or relied-on Dagster function looked like when the patches were written (sha1 of
# its source). A change fails here: re-read the function against assets/event_log.py,
# assets/partition_walks.py, assets/run_workers.py and assets/instance.py, then update the digest and
# DAGSTER_SERIES.
PINNED = {
    ("dagster._core.storage.dagster_run", "DagsterRun.get_resolved_partitions_subset_for_events"): "8c0e8f286003",
    ("dagster._core.instance.runs.run_domain", "RunDomain._log_asset_planned_events"): "2032f0696144",
    ("dagster._core.storage.event_log.sql_event_log", "SqlEventLogStorage._store_asset_check_evaluation_planned"): "30f971dc7bad",
    ("dagster._core.storage.event_log.sqlite.sqlite_event_log", "SqliteEventLogStorage.store_event"): "0f7c5518ed15",
    ("dagster._core.storage.event_log.base", "EventLogStorage.store_event_batch"): "82f71f7d71e7",
    ("dagster._core.storage.event_log.sql_event_log", "SqlEventLogStorage._store_asset_event"): "b39c26c31608",
    ("dagster._core.storage.event_log.sql_event_log", "SqlEventLogStorage._store_asset_event_tags"): "e928315000e2",
    ("dagster._core.definitions.partitions.definition.time_window",
     "TimeWindowPartitionsDefinition._iterate_time_windows"): "8f401ccd867b",
    ("dagster._daemon.backfill", "execute_backfill_iteration_loop"): "6aa79fa13bbd",
    ("dagster._core.definitions.partitions.subset.time_window",
     "TimeWindowPartitionsSubset._add_partitions_to_time_windows"): "25625ca5334d",
    ("dagster._daemon.controller", "create_daemon_of_type"): "f71e1dea26ca",
    ("dagster._daemon.daemon", "BackfillDaemon.core_loop"): "7d38bf155ec4",
    ("dagster._core.storage.sqlite_storage", "DagsterSqliteStorage.from_config_value"): "de129fec74dc",
    ("dagster_postgres.storage", "DagsterPostgresStorage.from_config_value"): "301a9c723e61",
    ("dagster._grpc.server", "DagsterApiServer.__init__"): "484d8d59154b",
    ("dagster._grpc.server", "DagsterApiServer._cleanup_thread"): "e521d69b7a03",
    ("dagster._grpc.server", "DagsterApiServer.StartRun"): "60090a9786fe",
    ("dagster_shared.seven", "import_module_from_path"): "9045523c9c6d",
}


def _digest(module: str, qualname: str) -> str:
    # Read from the module's file, not the live attribute: the patches may already be installed here.
    source = inspect.getsource(importlib.import_module(module))
    class_name, function = qualname.split(".") if "." in qualname else (None, qualname)
    for node in ast.walk(ast.parse(source)):
        if class_name is None and isinstance(node, ast.FunctionDef) and node.name == function:
            return hashlib.sha1(ast.get_source_segment(source, node).encode()).hexdigest()[:12]
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == function:
                    return hashlib.sha1(ast.get_source_segment(source, item).encode()).hexdigest()[:12]
    return "missing"


def test_the_patched_dagster_internals_are_the_ones_the_patches_were_written_for():
    changed = {f"{module}:{name}": _digest(module, name) for (module, name), pinned in PINNED.items()
               if _digest(module, name) != pinned}
    assert not changed, f"Dagster changed what the patches of assets/instance.py rely on: {changed}"
