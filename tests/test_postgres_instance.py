"""The deployment instance (dagster.postgres.yaml) against a real PostgreSQL server whose
connections drop mid-run: the run must reach a final state and its retry complete the backfill.

The database, DAGSTER_HOME, environment and process helpers come from tests/postgres_support.py;
the module is skipped when no server answers. The backfill-recording test is in
test_postgres_backfill.py.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from postgres_support import (  # noqa: F401  (pg_db and deployment are fixtures)
    ASSET_JOB,
    DAGSTER,
    DAGSTER_DAEMON,
    LOCATION,
    RANGE_END_TAG,
    RANGE_START_TAG,
    REPO_ROOT,
    _free_port,
    _materialize,
    _materialized_partitions,
    _process,
    _runs,
    _sessions,
    _terminate_backends,
    _wait,
    _wait_for_code_server,
    deployment,
    pg_db,
)

pytestmark = [
    pytest.mark.slow,
    # These tests start several Dagster processes each; on two cores they are better run one after another.
    pytest.mark.xdist_group("postgres_instance"),
]


# One sweep that terminates whatever is connected at that moment (like a server restart or a
# failover), and connections killed again and again for 2 s (a flapping network or proxy).
DROPS = {
    "single_drop": {"seconds": 10.0, "until_first": True},
    "flapping_2s": {"seconds": 2.0},
}


# The flapping variant can end in states only Dagster's own later sweeps (or an operator) resolve,
# as its docstring records; it runs on request so the default suite stays deterministic.
CHAOS = os.environ.get("ALPHATWIN_CHAOS_TESTS") == "1"


@pytest.mark.parametrize("drop", [
    d if d == "single_drop" or CHAOS else pytest.param(d, marks=pytest.mark.skip(reason="set ALPHATWIN_CHAOS_TESTS=1 to run"))
    for d in DROPS
])
def test_connection_drops_mid_run_end_in_a_final_state_and_the_retry_completes(deployment, record_property, drop):
    """Kill the instance's Postgres connections mid-backfill: the run must end, and its
    re-execution from failure must complete every partition.

    The deployment's path without containers: a gRPC code server (`dagster code-server start`, as
    in the Dockerfile) and `dagster-daemon run` on a workspace pointing at it, with the instance
    exactly as in dagster.postgres.yaml (queued runs, DefaultRunLauncher, run retries).
    `dagster job launch` queues `raw_ohlcv` over the 252 sessions of 2024 as one single-run
    backfill. Once the run has recorded its first partition, the backends of the database (the run
    worker's, the daemon's, the code server's) are terminated with pg_terminate_backend:
    ``single_drop`` sweeps every 20 ms only until one sweep has terminated something (a restart
    or failover); ``flapping_2s`` sweeps every 20 ms for 2 s.

    Observed on this machine (2 cores, PostgreSQL 15, dagster 1.13.27):

    - single_drop, 5 runs: 4 times the run worker's in-flight write died (``OperationalError:
      server closed the connection unexpectedly`` inside Dagster's bookkeeping, so raw_ohlcv
      failed with a STEP_FAILURE), the run reached FAILURE and the daemon's run retries
      re-executed it from failure (dagster/retry_number=1, same partition range), successfully;
      once the sweep hit another process's connection and the run simply succeeded.
    - flapping_2s, 19 runs: the run always failed the same way. 9 times it then went as above.
      The other 10 hit a gap, each recognised here by its exact log line:
      gap 1 (7 runs): the code server's orphan check (thread ``grpc-server-cleanup``) died on the
      dropped connection while the worker was exiting, so the dead run stayed STARTED; only run
      monitoring's max_runtime_seconds (6 h) would end it, and later dead runs of that code server
      go unnoticed too. The test forces Dagster's monitoring timeout path with 1 s, then expects
      the automatic retry.
      gap 2 (1 run): the daemon's retry handler hit the drop while tagging the failed run and the
      event-log consumer advanced its cursor anyway: no automatic retry ever came. The test
      re-executes from failure by hand (``execute_job`` with ``ReexecutionOptions.from_failure``).
      gap 3 (2 runs): the daemon created the retry run but submitting it failed ("Failed to retry
      run ..."): it stays NOT_STARTED until run monitoring's start_timeout_seconds (180 s) fails
      it, then retry #2 runs. The test fast-forwards that clock for Dagster's own check.

    The test passes when the run ended and the daemon's retries finished the job (or the run
    succeeded); reports XFAIL, with the reason, when it had to step in for a known gap, after
    checking that recovery then completes every partition; and fails on anything else. The
    ``outcome`` property says which case occurred.

    With `dagster asset materialize` (in-process, no code server or daemon watching) the same drop
    left the run STARTED after its process exited, with nothing to mark it failed (seen while
    writing this test; not asserted here).
    """
    env, instance, tmp, db = deployment["env"], deployment["instance"], deployment["tmp"], deployment["db"]
    _materialize(env, "--select", "universe")

    port = _free_port()
    workspace = tmp / "workspace.yaml"
    workspace.write_text(
        f"load_from:\n  - grpc_server:\n      host: 127.0.0.1\n      port: {port}\n      location_name: {LOCATION}\n"
    )
    server_log, daemon_log = tmp / "code_server.log", tmp / "daemon.log"
    logs = (server_log, daemon_log)
    sessions = _sessions("2024-01-02", "2024-12-31")
    assert len(sessions) == 252
    gaps: list[str] = []

    with _process(
        [str(DAGSTER), "code-server", "start", "-h", "127.0.0.1", "-p", str(port), "-f", "definitions.py",
         "-d", str(REPO_ROOT), "--location-name", LOCATION],
        env, server_log,
    ) as server:
        _wait_for_code_server(port, server, server_log)
        with _process([str(DAGSTER_DAEMON), "run", "-w", str(workspace)], env, daemon_log):
            run_id = str(uuid.uuid4())
            launch = subprocess.run(
                [str(DAGSTER), "job", "launch", "-w", str(workspace), "-j", ASSET_JOB, "-o", "raw_ohlcv",
                 "--run-id", run_id, "--tags", json.dumps({RANGE_START_TAG: sessions[0], RANGE_END_TAG: sessions[-1]})],
                cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
            )
            assert launch.returncode == 0, launch.stdout[-3000:] + launch.stderr[-3000:]

            from dagster import DagsterEventType

            def first_partition_recorded():
                records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION, limit=1)
                return bool(records.records) or instance.get_run_by_id(run_id).is_finished

            _wait(first_partition_recorded, 180, "the run to start recording partitions", logs)
            killed = _terminate_backends(db, **DROPS[drop])
            record_property("backends_terminated", killed)

            def final_or_orphaned():
                run = instance.get_run_by_id(run_id)
                if run.is_finished:
                    return run, None
                gap = _orphaned_by_dead_cleanup_thread(instance, run_id, server_log)
                return (run, gap) if gap else None

            run, orphaned = _wait(final_or_orphaned, 120, "the run to reach a final state after the drop", logs)
            if orphaned:
                gaps.append(orphaned)
                # Stand in for the six hours: Dagster's own run-monitoring timeout path, with 1 s.
                from dagster._daemon.monitoring.run_monitoring import check_run_timeout

                check_run_timeout(instance, instance.get_run_record_by_id(run_id), logging.getLogger(__name__), 1.0)
                run = instance.get_run_by_id(run_id)
            assert run.status.value in ("SUCCESS", "FAILURE"), run.status

            if run.status.value == "SUCCESS":
                outcome = "succeeded despite the drop"
            else:
                outcome = "failed; " + _recover(instance, run_id, env, daemon_log, logs, gaps)
                _, group = instance.get_run_group(run_id)
                final = next((r for r in group if r.is_success), None)
                if final is None:  # only when every step had succeeded: nothing was left to re-execute
                    assert any(NOTHING_LEFT in gap for gap in gaps), outcome
                else:
                    assert final.root_run_id == run_id
                    assert (final.tags[RANGE_START_TAG], final.tags[RANGE_END_TAG]) == (sessions[0], sessions[-1])
            if orphaned:
                outcome = f"stuck STARTED until a forced monitoring timeout; then {outcome}"
            record_property("outcome", outcome)

    assert not [r for r in _runs(instance) if not r.is_finished], "a run was left in progress"
    assert set(sessions) <= _materialized_partitions(instance, "raw_ohlcv")
    raw_files = {p.stem for p in (deployment["data"] / "raw_ohlcv").glob("*.parquet")}
    assert raw_files == set(sessions)
    if gaps:
        pytest.xfail(
            "known gap(s) in dagster 1.13 with a dropped Postgres connection: " + "; ".join(gaps)
            + ". Recovery was completed by the test (see the docstring) and every partition is materialised."
        )


def _orphaned_by_dead_cleanup_thread(instance, run_id: str, server_log: Path) -> str | None:
    """Why the run is stuck, when it is the known way: its process is gone and so is the code
    server's orphan check (thread ``grpc-server-cleanup``, killed by the dropped connection).
    None for any other state, which the test then reports as a failure."""
    from dagster import DagsterEventType

    run = instance.get_run_by_id(run_id)
    if run.is_finished:
        return None
    pids = [
        int(m.group(1))
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)
        if (m := re.search(r"Started process for run \(pid: (\d+)\)", entry.dagster_event.message or ""))
    ]
    if not pids or any(_alive(pid) for pid in pids):
        return None
    if "Exception in thread grpc-server-cleanup" not in server_log.read_text():
        return None
    return ("the code server's orphan-run check (thread grpc-server-cleanup) died on the dropped connection, "
            "so its dead run stayed STARTED (run monitoring would end it after max_runtime_seconds, 6 h)")


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


LOST_RETRY = "Error calling event event log consumer handler: consume_new_runs_for_automatic_reexecution"
NO_STEPS_TO_RETRY = "No steps needed to be retried in the failed run"
NOTHING_LEFT = "after its only step had succeeded"
UNSUBMITTED_RETRY = "Failed to retry run {parent}"


def _recover(instance, run_id: str, env, daemon_log: Path, logs, gaps: list[str]) -> str:
    """Wait until the run's group ends in a success through the daemon's run retries, stepping in
    only for the two known ways the dropped connection breaks them (each recognised by the
    daemon's own log line). Returns what happened, for the ``outcome`` property."""
    from dagster import DagsterRunStatus

    interventions: list[str] = []
    seen_since: dict[tuple[str, str], float] = {}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        _, group = instance.get_run_group(run_id)
        if any(r.is_success for r in group) and all(r.is_finished for r in group):
            later = sorted((r for r in group if r.run_id != run_id), key=lambda r: r.tags.get("dagster/retry_number", "9"))
            history = [
                (f"automatic retry #{r.tags['dagster/retry_number']}" if r.tags.get("dagster/retry_number")
                 else "re-execution by hand") + f" {r.status.value}"
                for r in later
            ]
            return "; ".join(interventions + history)
        assert len(group) <= 4, f"more re-executions than run_retries allows: {[(r.run_id, r.status) for r in group]}"
        parents = {r.parent_run_id for r in group}
        daemon_text = daemon_log.read_text()
        for leaf in [r for r in group if r.run_id not in parents]:
            since = seen_since.setdefault((leaf.run_id, leaf.status.value), time.monotonic())
            waited = time.monotonic() - since
            if (leaf.status == DagsterRunStatus.NOT_STARTED and waited > 20
                    and UNSUBMITTED_RETRY.format(parent=leaf.parent_run_id) in daemon_text):
                # The daemon created the retry but its submission hit the drop: the run stays
                # NOT_STARTED until run monitoring's start_timeout_seconds (180 s) fails it, and run
                # retries then try again. Fast-forward that clock for Dagster's own check.
                from dagster._daemon.monitoring import run_monitoring

                gaps.append("the daemon created a retry run but failed to submit it (NOT_STARTED until run "
                            "monitoring's start_timeout_seconds, 180 s, fails it; forced here)")
                interventions.append("retry left NOT_STARTED, failed by a forced start timeout")
                with pytest.MonkeyPatch.context() as mp:
                    timeout = instance.run_monitoring_start_timeout_seconds
                    mp.setattr(run_monitoring, "get_current_timestamp", lambda: time.time() + timeout + 1)
                    run_monitoring.monitor_starting_run(instance, instance.get_run_record_by_id(leaf.run_id),
                                                        logging.getLogger(__name__))
            elif (leaf.status == DagsterRunStatus.FAILURE and NO_STEPS_TO_RETRY in daemon_text
                  and _every_step_succeeded(instance, leaf.run_id)):
                # A step's materialisations are written as one batch when it ends (assets/event_log.py),
                # so the sweep, which waits for the first one, can only hit what follows: the run's
                # own bookkeeping. The run ends FAILURE with every step done and Dagster's run
                # retries refuse ("no steps needed"). The caller still checks every partition.
                gaps.append(f"the drop hit the run's bookkeeping {NOTHING_LEFT}, so it ended FAILURE with "
                            "nothing for run retries to re-execute")
                return "every step had succeeded; nothing to re-execute"
            elif leaf.status == DagsterRunStatus.FAILURE and waited > 45 and LOST_RETRY in daemon_text:
                gaps.append("the daemon's retry handler failed on the dropped connection and the event-log "
                            "consumer advanced past the failure anyway, so no automatic retry came")
                interventions.append("automatic retry lost")
                _reexecute_from_failure(env, leaf.run_id)
            elif leaf.status == DagsterRunStatus.FAILURE and waited > 90:
                pytest.fail(f"run retries never re-executed failed run {leaf.run_id}\n"
                            + "\n".join(p.read_text()[-4000:] for p in logs))
        time.sleep(0.5)
    pytest.fail(f"the run group of {run_id} did not end in a success\n" + "\n".join(p.read_text()[-4000:] for p in logs))


def _every_step_succeeded(instance, run_id: str) -> bool:
    from dagster._core.execution.stats import StepEventStatus

    stats = instance.get_run_step_stats(run_id)
    return bool(stats) and all(s.status == StepEventStatus.SUCCESS for s in stats)


REEXECUTE_FROM_FAILURE = """
import sys
from dagster import DagsterInstance, ReexecutionOptions, execute_job
from dagster._core.definitions.reconstruct import ReconstructableRepository

run_id = sys.argv[1]
job = ReconstructableRepository.for_file("definitions.py", "defs", working_directory=".").get_reconstructable_job("__ASSET_JOB")
with DagsterInstance.get() as instance:
    parent = instance.get_run_by_id(run_id)
    tags = {k: v for k, v in parent.tags.items() if k.startswith("dagster/asset_partition_range")}
    result = execute_job(job, instance, tags=tags, reexecution_options=ReexecutionOptions.from_failure(run_id, instance))
    print(result.run_id)
"""


def _reexecute_from_failure(env, run_id: str) -> None:
    """Re-execute ``run_id`` from its failure with the public API, in a subprocess (as an operator would)."""
    proc = subprocess.run([sys.executable, "-c", REEXECUTE_FROM_FAILURE, run_id], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
