"""Shared by the PostgreSQL instance tests: a database per test module on a real server, a
DAGSTER_HOME holding ``dagster.postgres.yaml`` unchanged as ``dagster.yaml`` (the connection given
only through ``DAGSTER_PG_*``), and the Dagster processes the tests start and stop.

The server is ``127.0.0.1:5432``, user ``postgres`` (the libpq variables ``PGHOST``, ``PGPORT``,
``PGUSER`` and ``PGPASSWORD`` override that); ``pg_db`` skips the module when it does not answer.
The market is the synthetic one, cut to 20 symbols through ``ALPHATWIN_UNIVERSE``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

psycopg2 = pytest.importorskip("psycopg2", reason="psycopg2 comes with dagster-postgres (the dagster extra)")

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAGSTER = BIN / "dagster"
DAGSTER_DAEMON = BIN / "dagster-daemon"
INSTANCE_YAML = REPO_ROOT / "dagster.postgres.yaml"

PG_HOST = os.environ.get("PGHOST") or "127.0.0.1"
PG_PORT = int(os.environ.get("PGPORT") or 5432)
PG_USER = os.environ.get("PGUSER") or "postgres"
PG_PASSWORD = os.environ.get("PGPASSWORD") or ""

LOCATION = "alphatwin_pipelines"
ASSET_JOB = "__ASSET_JOB"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def _postgres_answers() -> bool:
    try:
        socket.create_connection((PG_HOST, PG_PORT), timeout=2).close()
    except OSError:
        return False
    return True


def _admin():
    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, password=PG_PASSWORD, dbname="postgres")
    conn.autocommit = True
    return conn


@pytest.fixture(scope="module")
def pg_db():
    """A fresh database for this module, dropped (with whatever still holds it) at the end."""
    if not _postgres_answers():
        pytest.skip(f"no PostgreSQL server answers on {PG_HOST}:{PG_PORT} (the Postgres instance needs one)")
    name = f"alphatwin_test_{uuid.uuid4().hex[:12]}"
    try:
        with contextlib.closing(_admin()) as conn:
            conn.cursor().execute(f'CREATE DATABASE "{name}"')
    except psycopg2.Error as exc:
        pytest.skip(f"cannot create a test database on {PG_HOST}:{PG_PORT} as {PG_USER}: {exc}".strip())
    try:
        yield name
    finally:
        with contextlib.closing(_admin()) as conn:
            conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def deployment(pg_db, tmp_path):
    """A DAGSTER_HOME holding dagster.postgres.yaml, a data dir, the env for every subprocess, and the instance."""
    from dagster import DagsterInstance

    from alphatwin_pipelines.sources.synthetic import SyntheticSource

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(INSTANCE_YAML, home / "dagster.yaml")
    data = tmp_path / "data"
    data.mkdir()
    symbols = SyntheticSource(n_symbols=20).universe()["symbol"].tolist()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHATWIN_", "DAGSTER_", "POLYGON_"))}
    env.update(
        DAGSTER_HOME=str(home),
        DAGSTER_PG_HOST=PG_HOST,
        DAGSTER_PG_PORT=str(PG_PORT),
        DAGSTER_PG_USER=PG_USER,
        # The instance file requires the variable; under trust auth its value is ignored.
        DAGSTER_PG_PASSWORD=PG_PASSWORD or "unused-under-trust-auth",
        DAGSTER_PG_DB=pg_db,
        ALPHATWIN_DATA_DIR=str(data),
        ALPHATWIN_SOURCE="synthetic",
        ALPHATWIN_UNIVERSE=",".join(symbols),
        PYTHONUNBUFFERED="1",
    )
    with pytest.MonkeyPatch.context() as mp:
        # The instance resolves DAGSTER_PG_* once, when it is built.
        for key in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
            mp.setenv(key, env[key])
        instance = DagsterInstance.from_config(str(home))
    try:
        yield {"env": env, "home": home, "data": data, "db": pg_db, "instance": instance, "tmp": tmp_path}
    finally:
        instance.dispose()


def _materialize(env, *args, timeout=240):
    proc = subprocess.run(
        [str(DAGSTER), "asset", "materialize", "-f", "definitions.py", "-d", ".", *args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, f"dagster asset materialize {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _sessions(start: str, end: str) -> list[str]:
    from alphatwin_pipelines.calendar import sessions_between

    return [f"{s:%Y-%m-%d}" for s in sessions_between(start, end)]


def _runs(instance):
    return list(instance.get_runs())


def _materialized_partitions(instance, asset: str) -> set[str]:
    from dagster import AssetKey

    return set(instance.get_materialized_partitions(AssetKey(asset)))



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _process(args, env, log: Path):
    """A subprocess in its own process group, stopped with SIGTERM (SIGKILL after 20 s) at the end."""
    def own_group_default_signals():
        os.setsid()
        # Dagster maps SIGTERM to the SIGINT handler; a SIGINT ignored by a background shell would
        # be inherited and make SIGTERM a no-op too.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    with open(log, "w") as out:
        proc = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=own_group_default_signals)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            pass
        # The group also holds run workers the code server started; none may outlive the test.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _wait_for_code_server(port: int, proc, log: Path, timeout=120):
    from dagster._grpc.client import DagsterGrpcClient

    client = DagsterGrpcClient(port=port, host="127.0.0.1")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the code server exited:\n{log.read_text()[-3000:]}"
        with contextlib.suppress(Exception):
            if "ListRepositoriesResponse" in client.list_repositories():
                return
        time.sleep(0.5)
    pytest.fail(f"the code server did not load definitions.py within {timeout} s:\n{log.read_text()[-3000:]}")


def _wait(predicate, timeout, what, logs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in logs)
    pytest.fail(f"timed out after {timeout} s waiting for {what}\n{tails}")


def _terminate_backends(db: str, seconds: float, until_first: bool = False, every: float = 0.02) -> int:
    """Terminate every backend of ``db`` but this one, every ``every`` s for ``seconds`` (or, with
    ``until_first``, only until a sweep has terminated something); how many were terminated."""
    killed = 0
    with contextlib.closing(_admin()) as conn, conn.cursor() as cur:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until_first and killed):
            cur.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (db,),
            )
            killed += cur.fetchone()[0]
            time.sleep(every)
    return killed
