"""assets/event_log.py: a single-run backfill on a real SQLite instance records the same partitions,
with one planned event per asset and each step's materialisations written as one batch.

The peer is the same run on a stock instance in the same test (the patch is per process, so the
stock run goes first, in a child process).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO_ROOT

# A two-asset chain with a check, partitioned by the project's sessions, over ten sessions in one
# run, twice (re-running is safe); prints what the instance recorded.
SCRIPT = textwrap.dedent("""
    import json, os, sys, tempfile
    sys.path.insert(0, os.getcwd())
    import dagster as dg
    if sys.argv[1] == "ours":
        from assets import event_log
        event_log.install()
    from assets.partitions import session_partitions

    parts = session_partitions("2024-01-02")
    policy = dg.BackfillPolicy.single_run()

    @dg.asset(partitions_def=parts, backfill_policy=policy)
    def first(context) -> None:
        pass

    @dg.asset(partitions_def=parts, backfill_policy=policy, deps=[first],
              check_specs=[dg.AssetCheckSpec("positive", asset="second")])
    def second(context):
        yield dg.MaterializeResult()
        yield dg.AssetCheckResult(passed=len(context.partition_keys) > 0)

    keys = parts.get_partition_keys()[:10]
    tags = {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}
    with tempfile.TemporaryDirectory() as home, dg.DagsterInstance.from_config(home) as instance:
        for _ in range(2):
            assert dg.materialize([first, second], instance=instance, tags=tags).success
        planned = instance.get_records_for_run(instance.get_runs(limit=1)[0].run_id,
            of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED).records
        out = {"materialized": {k: sorted(instance.get_materialized_partitions(dg.AssetKey(k))) for k in ("first", "second")},
               "events": len(instance.fetch_materializations(dg.AssetKey("second"), limit=100).records),
               "planned_per_run": len(planned),
               "check_rows": [r.status.value for r in instance.event_log_storage.get_asset_check_execution_history(
                   dg.AssetCheckKey(dg.AssetKey("second"), "positive"), limit=100)],
               "latest": instance.get_latest_materialization_event(dg.AssetKey("second")).dagster_event.partition,
               "asset_row": instance.get_asset_records([dg.AssetKey("second")])[0].asset_entry
                   .last_materialization_record.event_log_entry.dagster_event.partition,
               "tags": len(instance.get_event_tags_for_asset(dg.AssetKey("second"))),
               "keys": keys}
    print("RESULT", json.dumps(out))
""")


def _record(mode: str) -> dict:
    env_cleared = {k: v for k, v in __import__("os").environ.items()
                   if k not in ("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "DAGSTER_EVENT_BATCH_SIZE")}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, mode], cwd=REPO_ROOT, env=env_cleared,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


@pytest.mark.filterwarnings("ignore::dagster.BetaWarning")
def test_batched_event_log_records_the_same_partitions_as_dagsters_own():
    stock, ours = _record("stock"), _record("ours")
    keys = ours["keys"]
    assert ours["materialized"] == stock["materialized"] == {"first": keys, "second": keys}
    # Two runs x ten sessions: every partition's materialisation is kept, the latest is the last session.
    assert ours["events"] == stock["events"] == 20
    assert ours["latest"] == stock["latest"] == ours["asset_row"] == stock["asset_row"] == keys[-1]
    assert ours["tags"] == stock["tags"]
    # The check passed in both runs; Dagster also leaves a "planned" row per session that never resolves.
    assert ours["check_rows"] == ["SUCCEEDED", "SUCCEEDED"]
    assert stock["check_rows"].count("SUCCEEDED") == 2
    # Stock Dagster plans each session of each asset; ours plans each asset once.
    assert stock["planned_per_run"] == 2 * len(keys)
    assert ours["planned_per_run"] == 2
