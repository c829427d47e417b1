"""The quality stage judges a session the same way whatever run it is part of: one range, or one
daily partition after another (each its own ``validate_sessions`` call, as nightly runs do).

A return's robust baseline reaches back about twice its window (a MAD of deviations, each from
a median over its own window), so a daily run reading only one window of history judged a bar
against a shorter baseline than a range run did: the same bad print was rejected with a
different MAD count in its quarantine row.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from alphatwin_pipelines.quality.catalogue_series import BASELINE_LOOKBACK, WINDOW
from alphatwin_pipelines.schema import canonical_to_arrow, to_canonical
from alphatwin_pipelines.stages.quality import LOOKBACK_SESSIONS, residual_errors, validate_sessions
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import QUARANTINED, RAW, VALIDATED
from test_quality_rules import AS_OF, OHLC, bars

EXTREME = "return.extreme_outlier"


def _row(raw: pd.DataFrame, symbol: str, nth: int) -> int:
    return int(np.flatnonzero(raw["symbol"].to_numpy() == symbol)[nth])


def _scale(raw: pd.DataFrame, symbol: str, nth: int, factor: float, *, onwards: bool = False) -> pd.Timestamp:
    """Prices of ``symbol``'s ``nth`` bar (and every later one if ``onwards``: an unrecorded split) x ``factor``."""
    row = _row(raw, symbol, nth)
    rows = ((raw["symbol"] == symbol) & (raw.index >= row)).to_numpy() if onwards else [row]
    raw.loc[rows, OHLC] = np.round(raw.loc[rows, OHLC].to_numpy(dtype=float) * factor, 2)
    return pd.Timestamp(raw.loc[row, "date"])


def _market() -> tuple[pd.DataFrame, set]:
    """Four symbols over 200 sessions: a 10x print and an unrecorded 1-for-10 reverse split on
    seasoned symbols, and a listing (NEW, from session 150) with a 10x print in its first sessions."""
    raw = bars(symbols=("AAPL", "MSFT", "XOM"), sessions=200)
    young = bars(symbols=("NEW",), sessions=200, seed=8)
    raw = pd.concat([raw, young[young["date"] >= raw["date"].unique()[150]]], ignore_index=True)
    bad = {("AAPL", _scale(raw, "AAPL", 160, 10.0)), ("MSFT", _scale(raw, "MSFT", 170, 10.0, onwards=True)),
           ("NEW", _scale(raw, "NEW", 6, 10.0))}
    return raw, bad


def _validate(tmp_path, raw: pd.DataFrame, cut) -> tuple[dict[str, str], pd.DataFrame, list[pd.DataFrame]]:
    """Validate ``raw`` in the runs ``cut(sessions)`` returns; the tables' bytes, the quarantine
    and each run's re-check (ERROR rules over its validated rows)."""
    store = TableStore(tmp_path / "data")
    frame = to_canonical(raw)
    sessions = pd.DatetimeIndex(sorted(frame["date"].unique()))
    store.write_sessions(RAW, frame, sessions, to_arrow=canonical_to_arrow)
    residuals = []
    for run in cut(sessions):
        report = validate_sessions(store, run, as_of=AS_OF)
        residuals.append(residual_errors(report.validated, report.recheck_context, as_of=AS_OF))
    files = {str(path.relative_to(store.data_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
             for table in (VALIDATED, QUARANTINED) for path in sorted((store.data_dir / table).rglob("*")) if path.is_file()}
    return files, store.read_partitions(QUARANTINED), residuals


def test_history_read_covers_the_baseline_of_every_return_rule():
    assert BASELINE_LOOKBACK == 2 * WINDOW + 1
    assert LOOKBACK_SESSIONS >= BASELINE_LOOKBACK


def test_one_range_and_daily_runs_write_identical_partitions(tmp_path):
    """Sessions 10..199 as one run, or 10..144 as one run and then one daily run per session:
    the bars after each rejected one are judged against it in both modes and every bar's
    baseline is the same, so the bytes are identical and the re-check agrees with the first pass."""
    raw, bad = _market()
    ranged, range_quarantine, range_residuals = _validate(tmp_path / "range", raw, lambda s: [s[10:]])
    daily, daily_quarantine, daily_residuals = _validate(
        tmp_path / "daily", raw, lambda s: [s[10:145], *(s[i:i + 1] for i in range(145, len(s)))])
    assert ranged.keys() == daily.keys() and len(ranged) > 2 * 150
    differ = sorted(name for name in ranged if ranged[name] != daily[name])
    assert not differ, f"partitions that depend on how the range was cut: {differ}"
    quarantined = {(r.symbol, pd.Timestamp(r.date)): r.rule_id for r in range_quarantine.itertuples()}
    assert quarantined == {key: EXTREME for key in bad}  # nothing else, least of all the bars after them
    assert all(r.empty for r in range_residuals) and all(r.empty for r in daily_residuals)
    assert range_quarantine["offending_value"].tolist() == daily_quarantine["offending_value"].tolist()
