"""The dbt marts built from a data directory on an object store (moto's S3 server on 127.0.0.1).

The data directory of tests/marts_support.py is written twice: as a local folder, and table by
table through ``TableStore`` onto a fresh bucket. One Dagster run builds the marts from each; the
DuckDB file of the remote build lies in the local state directory (DuckDB cannot write a database
to S3), and every mart holds the same rows as the local build's. A store that refuses requests
fails the build with an error naming the object it could not read and leaves the marts of the
previous build as they were; once it answers again the build succeeds.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from alphatwin_pipelines.objectstore import listing
from alphatwin_pipelines.storage import TableStore
from tests.marts_support import DBT_DIR, MARTS, build_marts, planted  # noqa: F401 (fixture)
from tests.s3_support import RefusingProxy, make_bucket, s3_server  # noqa: F401 (fixture)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::dagster.BetaWarning"),
    pytest.mark.filterwarnings("ignore:sqlglotrs is deprecated:DeprecationWarning"),  # imported by dagster-dbt
    pytest.mark.xdist_group("dbt_marts"),
]


def _source_tables() -> dict[str, bool]:
    """Each dbt source table -> whether it is session-partitioned (dbt/models/staging/_sources.yml)."""
    spec = yaml.safe_load((DBT_DIR / "models" / "staging" / "_sources.yml").read_text())
    return {t["name"]: s["config"]["meta"]["partitioned"] for s in spec["sources"] for t in s["tables"]}


def _upload_sources(local: Path, store: TableStore) -> None:
    with store.batch():
        for table, partitioned in _source_tables().items():
            if partitioned:
                for path in sorted((local / table).glob("*.parquet")):
                    store.write_partition(table, pd.Timestamp(path.stem), pq.read_table(path))
            else:
                store.write_table(table, pq.read_table(local / f"{table}.parquet"))


def _marts(database: Path) -> dict[str, pd.DataFrame]:
    """Every mart's rows, in a stable order."""
    with duckdb.connect(str(database), read_only=True) as db:
        frames = {name: db.sql(f"select * from {name}").df() for name in MARTS}
    return {name: f.sort_values(list(f.columns)).reset_index(drop=True) for name, f in frames.items()}


@pytest.fixture(scope="module")
def local_marts(planted, tmp_path_factory) -> dict[str, pd.DataFrame]:  # noqa: F811
    result, _ = build_marts(planted[0], tmp_path_factory.mktemp("dbt_target"))
    assert result.success
    return _marts(planted[0] / "marts.duckdb")


@pytest.fixture(scope="module")
def remote(s3_server, planted, tmp_path_factory):  # noqa: F811
    """(data dir URL, state dir, the marts run) with ALPHATWIN_DATA_DIR, ALPHATWIN_STATE_DIR and AWS_* set."""
    state = tmp_path_factory.mktemp("state")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in s3_server.env().items():
            patch.setenv(name, value)
        url = f"s3://{make_bucket(s3_server)}/data"
        patch.setenv("ALPHATWIN_DATA_DIR", url)
        patch.setenv("ALPHATWIN_STATE_DIR", str(state))
        _upload_sources(planted[0], TableStore(url))
        yield url, state, build_marts(url, tmp_path_factory.mktemp("dbt_target"))


def test_marts_from_the_object_store_equal_those_from_a_local_folder(remote, local_marts):
    url, state, (result, run_results) = remote
    assert result.success
    assert {r["status"] for r in run_results["results"]} <= {"success", "pass"}
    assert all(e.passed for e in result.get_asset_check_evaluations())
    built = _marts(state / "marts.duckdb")
    for name in MARTS:
        assert len(local_marts[name]) > 0, name
        pd.testing.assert_frame_equal(built[name], local_marts[name], check_exact=False, rtol=1e-12, obj=name)
    # Only the tables are on the store: the database stayed local.
    store = TableStore(url)
    assert "marts.duckdb" not in listing(store.data_dir)


def test_the_staging_views_read_the_object_store_by_url(remote, planted):  # noqa: F811
    import s3fs

    url, state, _ = remote
    with duckdb.connect(str(state / "marts.duckdb"), read_only=True) as db:
        schema, definition = db.execute(
            "select schema_name, sql from duckdb_views() where view_name = 'stg_raw_ohlcv'").fetchone()
        assert f"{url}/raw_ohlcv/*.parquet" in definition
        db.register_filesystem(s3fs.S3FileSystem())
        (rows,) = db.execute(f"select count(*) from {schema}.stg_raw_ohlcv").fetchone()
    assert rows == len(TableStore(planted[0]).read_partitions("raw_ohlcv")) > 0


def test_a_refusing_store_fails_the_build_clearly_and_keeps_the_previous_marts(remote, s3_server, tmp_path,
                                                                                monkeypatch):
    url, state, _ = remote
    before = _marts(state / "marts.duckdb")
    proxy = RefusingProxy(int(s3_server.endpoint.rsplit(":", 1)[1]))
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    try:
        proxy.refuse()
        with monkeypatch.context() as patch:
            patch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's retries only make the failing build slower
            result, run_results = build_marts(url, tmp_path / "refused", raise_on_error=False)
        assert not result.success
        errors = [r["message"] for r in run_results["results"] if r["status"] == "error"]
        assert errors and all(url in message and proxy.endpoint in message for message in errors), errors
        [failure] = result.get_step_failure_events()
        message = failure.step_failure_data.user_failure_data.description
        assert "EndpointConnectionError" in message and f"read from {url} at {proxy.endpoint}" in message
        assert f"{state}/marts.duckdb" in message and "check AWS_ENDPOINT_URL" in message
        after = _marts(state / "marts.duckdb")
        for name in MARTS:
            pd.testing.assert_frame_equal(after[name], before[name], obj=name)

        proxy.refuse(False)
        result, _ = build_marts(url, tmp_path / "answered")
        assert result.success
    finally:
        proxy.close()
