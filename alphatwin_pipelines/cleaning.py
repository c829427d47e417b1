"""Missing-session policy, point in time: short absences filled flat, long ones and halts reported.

The policy is one-sided because it must hold at the moment it is applied. At session ``t``
nobody knows whether a symbol missing today will be back tomorrow, next month or never.
Filling a gap only once the row closing it is known (the former two-sided policy) uses the
future: a backtest would see fills that a live run could not have produced, and a stored
partition would depend on how far the run that wrote it happened to reach. So every decision
about session ``t`` uses only rows dated on or before ``t``:

* A listed symbol (it has a real bar before ``t``) with no row at ``t`` whose last real bar is
  at most ``max_ffill`` sessions old gets a flat bar at that bar's close:
  ``open = high = low = close = last close``. Copying the last open/high/low would invent a
  trading range nobody traded; a flat bar adds no volatility and a return of 0.
* Volume is never filled (``volume = 0``): zero keeps the int64 schema and cannot inflate
  averages of traded volume. Filled rows carry ``dividend = 0`` and ``split_ratio = 1`` (no
  event on a day without a bar), ``flags == "ffill"`` and ``filled == True``, and copy every
  other column (e.g. ``source``) from the last real bar.
* Missing for longer is not filled, only reported (``reason == "gap"``) for at most
  ``report_window`` sessions after the last real bar: weeks of invented prices would hide a
  real data problem, and a symbol gone that long has stopped trading (delisted), which is not
  a data gap. A delisted symbol therefore gets at most ``max_ffill`` fills after its last bar,
  and a late-listed one none before its first.
* A trading halt is a row with zero volume, ``open == high == low == close`` equal to the
  previous row's close, and no corporate action. It carries no information, so it is dropped
  and reported (``reason == "halt"``, one row per session); the halted session is not missing
  either, so it is never filled. A flat row carrying a dividend or a split is kept: it
  carries the event.

The report has columns ``symbol, gap_start, gap_end, sessions, reason``: one row per run of
consecutive filled (``ffill``) or unfilled (``gap``) sessions, one per halted session.
Inputs are never mutated; duplicate ``(symbol, date)`` rows are refused.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FLAG_FFILL = "ffill"
REASON_FFILL, REASON_GAP, REASON_HALT = "ffill", "gap", "halt"
REPORT_COLUMNS: tuple[str, ...] = ("symbol", "gap_start", "gap_end", "sessions", "reason")
#: A filled bar is flat: each price column takes the value of its close column.
_FLAT = {"open": "close", "high": "close", "low": "close",
         "adj_open": "adj_close", "adj_high": "adj_close", "adj_low": "adj_close"}
_NO_EVENT = {"volume": 0, "adj_volume": 0.0, "dividend": 0.0, "split_ratio": 1.0}


def clean(bars: pd.DataFrame, sessions, *, calendar, max_ffill: int = 3,
          report_window: int = 21) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply the policy at each of ``sessions``; return ``(cleaned, report)``.

    ``bars`` are the real rows; they may start before ``sessions`` (history, used only to know
    each symbol's last real bar and previous close) and rows after ``sessions[-1]`` are
    ignored. ``calendar`` is the exchange's sessions from the first bar to the last session
    (e.g. ``calendar.sessions_between(bars.date.min(), sessions[-1])``): ages of last bars are
    counted in its sessions, and rows outside it are invisible to the fill. History should
    reach ``report_window`` sessions back for gaps to be reported in full.

    ``cleaned`` holds the real (non-halt) rows dated within ``sessions`` plus the fills, sorted
    by (symbol, date), with ``bars``' columns plus ``filled`` (bool) and ``flags`` (kept as
    given on real rows, ``""`` if ``bars`` has none).
    """
    if max_ffill < 0:
        raise ValueError(f"max_ffill must be >= 0, got {max_ffill}")
    sessions, calendar = pd.DatetimeIndex(sessions), pd.DatetimeIndex(calendar)
    frame = bars.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)  # a copy: input untouched
    if "flags" not in frame:
        frame["flags"] = ""
    dup = frame.duplicated(["symbol", "date"])
    if dup.any():
        first = frame.loc[dup.idxmax()]
        raise ValueError(f"duplicate bar for ({first['symbol']}, {first['date']:%Y-%m-%d}); deduplicate first")

    halt = _halts(frame)
    real = frame[~halt]
    fills, gaps = _one_sided_fills(real, frame[halt], calendar, sessions, max_ffill, report_window)
    in_range = frame["date"].isin(sessions).to_numpy()
    kept = real[in_range[~halt]].assign(filled=False)
    cleaned = pd.concat([kept, fills], ignore_index=True) if len(fills) else kept
    cleaned = cleaned.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)

    halts = frame[halt & in_range]
    halt_report = pd.DataFrame({"symbol": halts["symbol"], "gap_start": halts["date"], "gap_end": halts["date"],
                                "sessions": 1, "reason": REASON_HALT})
    report = pd.concat([gaps, halt_report], ignore_index=True).sort_values(["symbol", "gap_start"], kind="stable")
    return cleaned, report.reset_index(drop=True)


def _halts(frame: pd.DataFrame) -> np.ndarray:
    """Rows of a halt: zero volume, flat at the previous row's close, no dividend or split."""
    previous_close = frame.groupby("symbol", sort=False)["close"].shift()
    flat = (frame["open"] == frame["high"]) & (frame["high"] == frame["low"]) & (frame["low"] == frame["close"])
    halt = (frame["volume"] == 0) & flat & (frame["close"] == previous_close)
    if "dividend" in frame:
        halt &= frame["dividend"] == 0
    if "split_ratio" in frame:
        halt &= frame["split_ratio"] == 1
    return halt.to_numpy()


def _one_sided_fills(real, halted, calendar, sessions, max_ffill, report_window):
    """Flat bars for symbols missing at most ``max_ffill`` sessions, and the report of runs.

    Works on a (calendar session x symbol) grid: ``last_seen`` is the position of each
    symbol's last real bar on or before each session, a running maximum, hence one-sided.
    """
    empty_gaps = pd.DataFrame(columns=list(REPORT_COLUMNS))
    if real.empty:
        return real.iloc[0:0].assign(filled=True), empty_gaps
    codes, symbols = pd.factorize(real["symbol"], sort=True)
    position = calendar.get_indexer(real["date"])  # -1: not a calendar session, invisible here
    on_calendar = position >= 0
    row_at = np.full((len(calendar), len(symbols)), -1, dtype=np.int64)
    row_at[position[on_calendar], codes[on_calendar]] = np.flatnonzero(on_calendar)
    present = row_at >= 0
    session_no = np.arange(len(calendar))[:, None]
    last_seen = np.maximum.accumulate(np.where(present, session_no, -1), axis=0)
    since = session_no - last_seen
    was_halted = np.zeros_like(present)
    if len(halted):
        h_pos = calendar.get_indexer(halted["date"])
        h_code = symbols.get_indexer(halted["symbol"])
        ok = (h_pos >= 0) & (h_code >= 0)
        was_halted[h_pos[ok], h_code[ok]] = True
    wanted = calendar.isin(sessions)[:, None]
    missing = ~present & (last_seen >= 0) & ~was_halted & wanted
    fill = missing & (since <= max_ffill)
    long_gap = missing & (since > max_ffill) & (since <= report_window)

    t_idx, s_idx = np.nonzero(fill)
    fills = real.iloc[row_at[last_seen[t_idx, s_idx], s_idx]].reset_index(drop=True)
    fills["date"] = pd.Series(calendar[t_idx], index=fills.index).astype(real["date"].dtype)
    for column, source in _FLAT.items():
        if column in fills and source in fills:
            fills[column] = fills[source]
    for column, value in _NO_EVENT.items():
        if column in fills:
            fills[column] = pd.Series(value, index=fills.index).astype(real[column].dtype)
    fills = fills.assign(flags=FLAG_FFILL, filled=True)
    g_idx, g_sym = np.nonzero(long_gap)
    report = pd.concat([_runs(symbols[s_idx], t_idx, calendar, REASON_FFILL),
                        _runs(symbols[g_sym], g_idx, calendar, REASON_GAP)], ignore_index=True)
    return fills, report if len(report) else empty_gaps


def _runs(symbols, positions, calendar, reason: str) -> pd.DataFrame:
    """Consecutive sessions per symbol collapsed into (symbol, gap_start, gap_end, sessions)."""
    cells = pd.DataFrame({"symbol": np.asarray(symbols, dtype=object), "pos": positions}).sort_values(["symbol", "pos"])
    if cells.empty:
        return pd.DataFrame(columns=list(REPORT_COLUMNS))
    new_run = (cells["symbol"] != cells["symbol"].shift()) | (cells["pos"].diff() != 1)
    grouped = cells.groupby(new_run.cumsum().to_numpy())
    return pd.DataFrame({
        "symbol": grouped["symbol"].first().to_numpy(),
        "gap_start": calendar[grouped["pos"].min().to_numpy()],
        "gap_end": calendar[grouped["pos"].max().to_numpy()],
        "sessions": grouped.size().to_numpy(),
        "reason": reason,
    })


__all__ = ["clean", "FLAG_FFILL", "REASON_FFILL", "REASON_GAP", "REASON_HALT", "REPORT_COLUMNS"]
