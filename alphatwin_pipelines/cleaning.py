"""Missing-session policy for (adjusted) bars: short gaps filled, long gaps and halts reported.

Policy, and why:

* Only sessions *inside* a symbol's life (between its first and last row) count as missing;
  before listing and after delisting there is simply no instrument.
* A run of at most ``max_ffill`` missing sessions is filled with a flat bar at the last known
  close: ``open = high = low = close = previous close`` (raw and adjusted alike). Copying the
  previous open/high/low would invent a trading range nobody traded; a flat bar adds no
  volatility and keeps returns over the gap at 0.
* Volume is never filled: filled rows get ``volume = 0`` and ``adj_volume = 0.0``. Zero keeps
  the int64 schema and cannot inflate averages of traded volume; the ``filled`` column and
  ``flag == "ffill"`` tell the truth for anyone who needs to exclude them.
* Filled rows carry ``dividend = 0`` and ``split_ratio = 1`` (no event on a day without a
  bar) and copy every other column (e.g. ``source``) from the row before the gap.
* Longer runs are left missing and reported (``reason == "gap"``): a month of invented prices
  would hide a real data problem.
* A trading halt is a row with zero volume, ``open == high == low == close`` equal to the
  previous row's close, and no corporate action. Such rows carry no information, so they are
  dropped from the output and reported (``reason == "halt"``); the halted sessions are not
  treated as missing, so they are not forward-filled either. A row carrying a dividend or a
  split is kept even if flat, because it carries the event.

The report has one row per run: ``symbol, gap_start, gap_end, sessions, reason`` where
``reason`` is ``ffill`` (filled), ``gap`` (too long, not filled) or ``halt`` (dropped).
Inputs are never mutated; duplicate ``(symbol, date)`` rows are refused.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from alphatwin_pipelines.adjustment import _days, _keys, _previous_in_symbol

FLAG_FFILL = "ffill"
REASON_FFILL, REASON_GAP, REASON_HALT = "ffill", "gap", "halt"
REPORT_COLUMNS: tuple[str, ...] = ("symbol", "gap_start", "gap_end", "sessions", "reason")
_PRICE_PAIRS = (("open", "close"), ("high", "close"), ("low", "close"), ("close", "close"),
                ("adj_open", "adj_close"), ("adj_high", "adj_close"), ("adj_low", "adj_close"),
                ("adj_close", "adj_close"))


def _runs(codes: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index and length of each run of consecutive positions within one symbol."""
    if codes.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    new = np.r_[True, (codes[1:] != codes[:-1]) | (positions[1:] != positions[:-1] + 1)]
    starts = np.flatnonzero(new)
    return starts, np.diff(np.r_[starts, codes.size])


def _report(symbols, starts, ends, lengths, reasons) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": pd.array(np.asarray(symbols, dtype=object), dtype="string"),
            "gap_start": pd.to_datetime(np.asarray(starts, dtype="datetime64[D]")).astype("datetime64[ns]"),
            "gap_end": pd.to_datetime(np.asarray(ends, dtype="datetime64[D]")).astype("datetime64[ns]"),
            "sessions": np.asarray(lengths, dtype=np.int64),
            "reason": pd.array(np.asarray(reasons, dtype=object), dtype="string"),
        }
    )


def clean(adjusted_bars: pd.DataFrame, sessions, max_ffill: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply the module's missing-session policy; return ``(cleaned, gaps_report)``.

    ``sessions`` is the exchange calendar to measure gaps against (e.g.
    ``calendar.sessions_between(start, end)``). ``cleaned`` is sorted by (symbol, date) with
    the input's columns plus ``filled`` (bool) and ``flag`` (``"ffill"`` or ``<NA>``).
    """
    if max_ffill < 0:
        raise ValueError(f"max_ffill must be >= 0, got {max_ffill}")
    codes, uniques = pd.factorize(adjusted_bars["symbol"], sort=True)
    uniques = np.asarray(uniques, dtype=object)
    days = _days(adjusted_bars["date"]) if len(adjusted_bars) else np.empty(0, dtype=np.int64)
    keys = _keys(codes, days)
    in_order = bool(np.all(keys[1:] >= keys[:-1]))
    order = np.arange(len(keys)) if in_order else np.argsort(keys, kind="stable")
    # a new frame either way (copy-on-write): the input is never touched
    frame = adjusted_bars.reset_index(drop=True) if in_order else adjusted_bars.iloc[order].reset_index(drop=True)
    codes, days, keys = codes[order], days[order], keys[order]
    dup = np.flatnonzero(keys[1:] == keys[:-1])
    if dup.size:
        raise ValueError(f"duplicate bar for ({uniques[codes[dup[0]]]}, day {days[dup[0]]}); deduplicate first")

    # --- halts: flat, zero-volume rows at the previous close, without an event
    same_symbol = np.zeros(len(codes), dtype=bool)
    same_symbol[1:] = codes[1:] == codes[:-1]
    o, h, l, c = (frame[col].to_numpy(dtype=np.float64) for col in ("open", "high", "low", "close"))
    prev_close = _previous_in_symbol(c, codes)
    halt = (frame["volume"].to_numpy() == 0) & (o == h) & (h == l) & (l == c) & (c == prev_close)
    if "dividend" in frame:
        halt &= frame["dividend"].to_numpy(dtype=np.float64) == 0
    if "split_ratio" in frame:
        halt &= frame["split_ratio"].to_numpy(dtype=np.float64) == 1
    halt_idx = np.flatnonzero(halt)
    h_starts, h_lens = _runs(codes[halt_idx], halt_idx)
    h_first, h_last = halt_idx[h_starts], halt_idx[h_starts + h_lens - 1]
    halt_report = _report(uniques[codes[h_first]], days[h_first], days[h_last], h_lens, [REASON_HALT] * len(h_lens))

    # --- missing sessions inside each symbol's life (halted sessions count as present)
    cal = np.unique(_days(pd.DatetimeIndex(sessions))) if len(sessions) else np.empty(0, dtype=np.int64)
    first_row = np.flatnonzero(~same_symbol)
    last_row = np.r_[first_row[1:] - 1, len(codes) - 1] if len(codes) else first_row
    lo = np.searchsorted(cal, days[first_row], side="left")
    hi = np.searchsorted(cal, days[last_row], side="right")
    span = np.maximum(hi - lo, 0)
    grid_code = np.repeat(codes[first_row], span)
    grid_pos = np.arange(span.sum()) - np.repeat(np.cumsum(span) - span, span) + np.repeat(lo, span)
    grid_keys = _keys(grid_code, cal[grid_pos]) if grid_pos.size else np.empty(0, dtype=np.int64)
    at = np.searchsorted(keys, grid_keys)
    present = (at < len(keys)) & (keys[np.minimum(at, max(len(keys) - 1, 0))] == grid_keys)
    miss_code, miss_pos, miss_key = grid_code[~present], grid_pos[~present], grid_keys[~present]
    g_starts, g_lens = _runs(miss_code, miss_pos)
    g_first, g_last = g_starts, g_starts + g_lens - 1
    filled_run = g_lens <= max_ffill
    gap_report = _report(uniques[miss_code[g_first]], cal[miss_pos[g_first]], cal[miss_pos[g_last]], g_lens,
                         np.where(filled_run, REASON_FFILL, REASON_GAP))

    # --- build the flat bars for short runs from the last row before each run
    run_of = np.repeat(np.arange(len(g_starts)), g_lens)
    fill = filled_run[run_of] if run_of.size else np.zeros(0, dtype=bool)
    source_row = np.searchsorted(keys, miss_key[g_first], side="left") - 1  # last row before the run
    take = source_row[run_of[fill]]
    filled = frame.iloc[take].reset_index(drop=True)
    filled["date"] = pd.to_datetime(cal[miss_pos[fill]].astype("datetime64[D]")).astype(frame["date"].dtype)
    for col, src in _PRICE_PAIRS:
        if col in filled and src in filled:
            filled[col] = frame[src].to_numpy()[take]
    for col, value in (("volume", 0), ("adj_volume", 0.0), ("dividend", 0.0), ("split_ratio", 1.0)):
        if col in filled:
            filled[col] = pd.Series(np.full(len(filled), value), index=filled.index).astype(frame[col].dtype)

    kept = frame.loc[~halt]
    kept = kept.assign(filled=False, flag=pd.Series(pd.NA, index=kept.index, dtype="string"))
    filled = filled.assign(filled=True, flag=pd.Series(FLAG_FFILL, index=filled.index, dtype="string"))
    out_codes = np.r_[codes[~halt], grid_code[~present][fill]]
    out_days = np.r_[days[~halt], cal[miss_pos[fill]]]
    if len(filled):
        cleaned = pd.concat([kept, filled], ignore_index=True)
        cleaned = cleaned.iloc[np.argsort(_keys(out_codes, out_days), kind="stable")].reset_index(drop=True)
    else:
        cleaned = kept.reset_index(drop=True)

    report = pd.concat([gap_report, halt_report], ignore_index=True)
    report = report.sort_values(["symbol", "gap_start"], kind="stable").reset_index(drop=True)
    return cleaned, report[list(REPORT_COLUMNS)]


__all__ = ["clean", "FLAG_FFILL", "REASON_FFILL", "REASON_GAP", "REASON_HALT", "REPORT_COLUMNS"]
