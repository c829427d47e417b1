"""Feature stage: blocks, direct Arrow writing and threaded writes change no byte of the output.

The reference is the plain path: ``compute_features`` on the run's bars (adjusted as of its
last session) written with ``TableStore.write_sessions``. The synthetic market has quarterly
dividends and splits, so the bars carry real adjustment factors.
"""

from __future__ import annotations

import hashlib

import pytest

from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.features import compute_features, max_lookback
from alphatwin_pipelines.sources.synthetic import SyntheticSource
from alphatwin_pipelines.tables import read_adjusted
from alphatwin_pipelines.stages.features import feature_sessions
from tests.fixtures.research import build_cleaned
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import FACTORS, FEATURES

SESSIONS = sessions_between("2021-01-04", "2021-06-30")
SYMBOLS = 25


@pytest.fixture(scope="module")
def cleaned_store(tmp_path_factory) -> TableStore:
    store = TableStore(tmp_path_factory.mktemp("features_stage"))
    build_cleaned(store, SyntheticSource(n_symbols=SYMBOLS), SESSIONS)
    return store


def _digests(store: TableStore) -> dict[str, str]:
    folder = store.table_dir(FEATURES)
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.parquet"))}


@pytest.fixture(scope="module")
def reference(cleaned_store, tmp_path_factory) -> dict[str, str]:
    bars = read_adjusted(cleaned_store, end=SESSIONS[-1], as_of=SESSIONS[-1])
    out = TableStore(tmp_path_factory.mktemp("reference"))
    out.write_sessions(FEATURES, compute_features(bars, sessions=SESSIONS), SESSIONS)
    return _digests(out)


def test_the_data_has_corporate_actions(cleaned_store):
    assert len(cleaned_store.read_partitions(FACTORS)) > 0


def test_one_block_writes_the_reference_bytes_and_rewrites_them_identically(cleaned_store, reference):
    report = feature_sessions(cleaned_store, SESSIONS)
    assert _digests(cleaned_store) == reference
    assert len(reference) == len(SESSIONS)
    feature_sessions(cleaned_store, SESSIONS)
    assert _digests(cleaned_store) == reference
    stored = cleaned_store.read_partitions(FEATURES)
    assert report.rows == stored.groupby("date").size().to_dict()
    assert report.symbols_with_history == {s: 0 for s in SESSIONS}  # < 200 sessions: no sma_200 yet


def test_many_small_blocks_write_the_same_bytes(cleaned_store, reference):
    # Every block's lookback (max_lookback sessions) reaches back to the first bar here, so
    # splitting the run cannot change even the recursive indicators.
    assert len(SESSIONS) < max_lookback()
    feature_sessions(cleaned_store, SESSIONS, row_budget=40 * SYMBOLS)
    assert _digests(cleaned_store) == reference


def test_a_later_session_alone_equals_its_backfilled_file_with_one_as_of(cleaned_store, reference):
    # A run of the last session alone adjusts as of that session, like the backfill did.
    last = SESSIONS[-1:]
    feature_sessions(cleaned_store, last)
    assert _digests(cleaned_store)[f"{last[0]:%Y-%m-%d}.parquet"] == reference[f"{last[0]:%Y-%m-%d}.parquet"]
