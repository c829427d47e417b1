"""Event-log writes that scale with the number of partitions in a single-run backfill.

A single-run backfill of N sessions over A assets makes Dagster write, before the run's first event,
one ``ASSET_MATERIALIZATION_PLANNED`` event per asset *and session* (A x N events, each its own
SQLite transaction, connection and fsync) and one asset-check row per check *and session*, each row
re-serialising the planned event whose partition subset carries the whole partitions definition
(every holiday exclusion: 27 KB). Then every step writes one materialisation per session, again one
transaction each. For 2000-2026 (6,772 sessions, 10 assets, 9 checks) that was most of the launch
and much of each step (profile: benchmarks/README.md, "Whole history").

``install()`` (called by assets/instance.py, the instance's storage class, so in every Dagster process:
CLI, webserver, daemon, code server and run workers) changes four things, none of them what is stored
for a partition:

- planned materialisations: one event per asset holding the run's partition subset, Dagster's own
  switch ``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS``. Its cost, documented by Dagster: when a
  run fails, its partitions show as missing, not failed, in the UI (the run itself shows failed).
- unpartitioned checks (all of this project's): planned once per run, as when the run is not a
  range. Dagster plans them once per session of the range, re-serialising the event for each row,
  and the check's (unpartitioned) result never resolves those rows: they stay "planned".
- partitioned checks: the event is serialised once per check, without the partition subset the row
  does not need (the row has its partition), instead of once per check and partition.
- batches: Dagster hands a step's per-partition materialisations to the storage as one batch when
  ``DAGSTER_EVENT_BATCH_SIZE`` is set; SQLite's storage then wrote them one transaction each anyway.
  Here a batch is one multi-row insert and one transaction per database file, and the asset's own row
  is updated once per batch with its latest event, as Postgres's batch write does.
"""

from __future__ import annotations

import os

# Larger than any batch Dagster forms here (a step's materialisations: one per session of the run).
EVENT_BATCH_SIZE = "100000"
ENVIRONMENT = {"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1", "DAGSTER_EVENT_BATCH_SIZE": EVENT_BATCH_SIZE}

_installed = False


def install() -> None:
    """Apply the three changes above once per process; a variable the user set wins."""
    global _installed
    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if _installed:
        return
    from dagster._core.storage.dagster_run import DagsterRun
    from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    resolve = DagsterRun.get_resolved_partitions_subset_for_events

    def resolved_subset(self, partitions_def):
        # Its only callers plan events; no partitions definition means an unpartitioned asset or check.
        return None if partitions_def is None else resolve(self, partitions_def)

    DagsterRun.get_resolved_partitions_subset_for_events = resolved_subset
    SqlEventLogStorage._store_asset_check_evaluation_planned = _store_asset_check_evaluation_planned
    SqliteEventLogStorage.store_event_batch = _sqlite_store_event_batch
    _installed = True


def _store_asset_check_evaluation_planned(self, event, event_id) -> None:
    """Dagster's method, with the row's event serialised once (and without the subset)."""
    from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationPlanned
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
    from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
    from dagster_shared.serdes import serialize_value

    planned = event.dagster_event.event_specific_data
    keys = planned.partitions_subset.get_partition_keys() if planned.partitions_subset else [None]
    row_event = event
    if planned.partitions_subset is not None:
        row_event = event._replace(dagster_event=event.dagster_event._replace(
            event_specific_data=AssetCheckEvaluationPlanned(asset_key=planned.asset_key,
                                                            check_name=planned.check_name)))
    serialized = serialize_value(row_event)
    common = dict(asset_key=planned.asset_key.to_string(), check_name=planned.check_name, run_id=event.run_id,
                  execution_status=AssetCheckExecutionRecordStatus.PLANNED.value, evaluation_event=serialized,
                  evaluation_event_timestamp=self._event_insert_timestamp(event),
                  evaluation_event_storage_id=event_id)
    with self.index_connection() as conn:
        conn.execute(AssetCheckExecutionsTable.insert(), [dict(common, partition=key) for key in keys])


def _sqlite_store_event_batch(self, events) -> None:
    """``SqliteEventLogStorage.store_event`` for a batch of one run's asset events, one transaction per file.

    Anything else (check events, run events, failures, mixed runs) goes through Dagster's loop.
    """
    from dagster._core.events import DagsterEventType
    from dagster._core.storage.event_log.schema import SqlEventLogStorageTable as table

    batchable = {DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
                 DagsterEventType.ASSET_OBSERVATION}
    if len({e.run_id for e in events}) != 1 or any(
            not e.is_dagster_event or e.dagster_event_type not in batchable for e in events):
        for event in events:
            self.store_event(event)
        return
    rows = [self._event_to_row(event) for event in events]
    with self.run_connection(events[0].run_id) as conn:
        conn.execute(table.insert(), rows)
    with self.index_transaction() as conn:
        inserted = conn.execute(table.insert().returning(table.c.id, sort_by_parameter_order=True), rows)
        event_ids = [row[0] for row in inserted]
        self._store_asset_event_tags(conn, events, event_ids)
        # The asset's own row keeps only its latest event (as Postgres's batch does): the last one of each key.
        latest = {event.dagster_event.asset_key: (event, event_id) for event, event_id in zip(events, event_ids)}
        for event, event_id in latest.values():
            self._store_asset_event(conn, event, event_id)
