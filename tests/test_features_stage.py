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


def _panel_with_gaps_and_splits(n_symbols: int = 60, n_days: int = 400, seed: int = 3):
    """Bars in shuffled order, with zero-volume (forward-filled) rows and splits: the volume factor's
    fallback through the split ratios is exercised."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=n_days)
    frames = []
    for i in range(n_symbols):
        close = 30 * np.exp(np.cumsum(rng.normal(0, 0.02, n_days)))
        volume = rng.lognormal(12, 0.5, n_days).round() * (rng.random(n_days) > 0.05)
        split = np.where(rng.random(n_days) < 0.01, 2.0, 1.0)
        factor = np.cumprod(split[::-1])[::-1]
        frames.append(pd.DataFrame({
            "symbol": f"S{i:03d}", "date": dates, "close": close, "volume": volume,
            "split_ratio": split, "adj_open": close / factor, "adj_high": close * 1.01 / factor,
            "adj_low": close * 0.99 / factor, "adj_close": close / factor, "adj_volume": volume * factor,
        }).iloc[int(rng.integers(0, 20)):])  # listings start on different days
    return pd.concat(frames).sample(frac=1, random_state=1).reset_index(drop=True), pd.DatetimeIndex(dates[-60:])


@pytest.mark.parametrize("n_shards", [1, 2, 7, 60, 100])
def test_symbol_shards_joined_equal_the_whole_panel_bit_for_bit(n_shards):
    """What the cluster does per block: a symbol's features depend on its own rows only."""
    import numpy as np

    from alphatwin_pipelines.features.compute import compute_block, normalise_sessions
    from alphatwin_pipelines.stages.features import join_blocks, symbol_shards

    bars, chunk = _panel_with_gaps_and_splits()
    whole = compute_block(bars, sessions=chunk)
    shards = symbol_shards(bars, n_shards)
    assert (len(shards) == 60 if n_shards >= 60 else 1 <= len(shards) <= n_shards)
    assert sum(len(s) for s in shards) == len(bars)
    assert [sorted(s["symbol"].unique()) for s in shards] == sorted(sorted(s["symbol"].unique()) for s in shards)
    joined = join_blocks([compute_block(s, sessions=chunk, normalise=False) for s in shards])
    normalise_sessions(joined.values, joined.days)
    assert (whole.names == joined.names).all() and (whole.codes == joined.codes).all()
    assert (whole.days == joined.days).all()
    assert np.array_equal(whole.values, joined.values, equal_nan=True) and joined.values.flags.f_contiguous
