"""The deployment instance (dagster.postgres.yaml) records a single-run backfill in a real
PostgreSQL server: runs, their partition-range tags and one materialisation per partition.

The database, DAGSTER_HOME and environment come from tests/postgres_support.py; the module is
skipped when no server answers. The connection-drop test is in test_postgres_instance.py.
"""

from __future__ import annotations

import contextlib

import pytest

from postgres_support import (  # noqa: F401  (pg_db and deployment are fixtures)
    PG_HOST,
    PG_PASSWORD,
    PG_PORT,
    PG_USER,
    RANGE_END_TAG,
    RANGE_START_TAG,
    _materialize,
    _materialized_partitions,
    _runs,
    _sessions,
    deployment,
    pg_db,
    psycopg2,
)

pytestmark = [
    pytest.mark.slow,
    # These tests start several Dagster processes each; on two cores they are better run one after another.
    pytest.mark.xdist_group("postgres_instance"),
]


def test_backfill_range_is_recorded_in_postgres(deployment):
    """`universe`, then `raw_ohlcv` over 10 sessions in one single-run backfill, as `make run` does it.

    The CLI cannot put an unpartitioned asset and a partition range in one call, so these are two
    runs, both recorded in PostgreSQL: two successful runs, one materialisation per partition.
    """
    env, instance = deployment["env"], deployment["instance"]
    before = {r.run_id for r in _runs(instance)}
    _materialize(env, "--select", "universe")
    _materialize(env, "--select", "raw_ohlcv", "--partition-range", "2024-03-04...2024-03-15")

    runs = [r for r in _runs(instance) if r.run_id not in before]
    assert len(runs) == 2
    assert all(run.is_success for run in runs), [(r.run_id, r.status) for r in runs]
    backfill = next(r for r in runs if r.tags.get(RANGE_START_TAG))
    assert (backfill.tags[RANGE_START_TAG], backfill.tags[RANGE_END_TAG]) == ("2024-03-04", "2024-03-15")

    expected = _sessions("2024-03-04", "2024-03-15")
    assert len(expected) == 10
    assert set(expected) <= _materialized_partitions(instance, "raw_ohlcv")
    for key in expected:
        latest = _latest_materialization(instance, "raw_ohlcv", key)
        assert latest is not None and latest.run_id == backfill.run_id, key
        meta = latest.asset_materialization.metadata
        # Every universe symbol is accounted for: with bars, or listed as missing (not yet or no longer listed).
        assert meta["symbols"].value + meta["symbols_missing"].value == 20 and meta["symbols"].value >= 15
    assert _latest_materialization(instance, "universe").run_id in {r.run_id for r in runs}
    # The instance really is the Postgres one, in the database made for this module.
    with contextlib.closing(psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, password=PG_PASSWORD,
                                             dbname=deployment["db"])) as conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_id = %s", (backfill.run_id,))
        assert cur.fetchone() == ("SUCCESS",)


def _latest_materialization(instance, asset: str, partition: str | None = None):
    """The latest materialisation event of ``asset`` (of one partition), as an EventLogEntry."""
    from dagster import AssetKey, AssetRecordsFilter

    records_filter = AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[partition] if partition else None)
    records = instance.fetch_materializations(records_filter, limit=1).records
    return records[0].event_log_entry if records else None
