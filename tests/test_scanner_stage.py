"""Scanner stage: the four tables per session, the same bytes in-process and on Dask, and one
atomic batch (signals are written group by group while the context is still being computed)."""

from __future__ import annotations

import hashlib

import pytest

from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.sources.synthetic import SyntheticSource
from alphatwin_pipelines.stages import scanner as scanner_stage
from tests.fixtures.research import build_cleaned
from alphatwin_pipelines.stages.scanner import OUTPUT_TABLES, scan_sessions
from alphatwin_pipelines.storage import TableStore

distributed = pytest.importorskip("distributed")

HISTORY = sessions_between("2022-01-03", "2022-12-30")
SCANNED = HISTORY[-30:]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> TableStore:
    store = TableStore(tmp_path_factory.mktemp("scanner_stage"))
    build_cleaned(store, SyntheticSource(n_symbols=30), HISTORY)
    return store


def _digests(store: TableStore) -> dict[str, str]:
    return {f"{table}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest()
            for table in OUTPUT_TABLES for p in sorted(store.table_dir(table).iterdir())}


def test_in_process_and_dask_write_the_same_bytes_and_rewrite_them_identically(store):
    result = scan_sessions(store, SCANNED)
    first = _digests(store)
    assert len(first) == len(OUTPUT_TABLES) * len(SCANNED)  # one file per table and session, no temporaries
    assert len(result.signals) > 100
    with distributed.Client(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as client:
        scan_sessions(store, SCANNED, client=client)  # 4 session groups written one by one
    assert _digests(store) == first
    scan_sessions(store, SCANNED)
    assert _digests(store) == first


def test_a_failure_after_signals_were_queued_replaces_nothing(store, monkeypatch):
    scan_sessions(store, SCANNED)
    before = _digests(store)
    for table in OUTPUT_TABLES:  # make every new file differ, if one were ever renamed into place
        for path in store.table_dir(table).iterdir():
            path.write_bytes(b"old")
    stale = _digests(store)

    def fail(*args, **kwargs):
        raise RuntimeError("disk full while writing the context")

    monkeypatch.setattr(scanner_stage.TableStore, "write_tables_by_session", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        scan_sessions(store, SCANNED)
    assert _digests(store) == stale and stale != before
