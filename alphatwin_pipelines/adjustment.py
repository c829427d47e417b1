"""Backward adjustment of raw bars for splits and cash dividends, point in time.

Raw bars stay as traded; adjusted prices are derived on demand so that any ``as_of`` view
can be rebuilt from the raw table alone. The method is the standard backward one:

* a cash dividend ``D`` with ex-date ``t`` multiplies every price before ``t`` by
  ``1 - D / P``, where ``P`` is the previous session's close expressed on the share basis of
  the ex-date row. ``P`` is the *raw* (as traded) close: a dividend paid after a split is
  quoted per post-split share, and the raw close of the session before it is already
  post-split, so the two are consistent without looking at any adjusted price. Only when a
  split and a dividend share a row does the raw close need restating: ``P = close[t-1] / r``
  (the dividend is per new share), i.e. ``factor = 1 - D * r / close[t-1]``.
* a split of ``r`` new shares per old share effective at ``t`` divides prices before ``t`` by
  ``r`` and multiplies volumes before ``t`` by ``r``.

With these factors the adjusted return over an ex-date is exactly
``r * close[t] / (close[t-1] - r * D) - 1`` — the standard method's identity. It differs
from the "price plus dividend" total return ``r * (close[t] + D) / close[t-1] - 1`` only by
the second-order term ``r * D * (r * close[t] + r * D - close[t-1]) / (close[t-1] * (close[t-1] - r * D))``.

Point in time: ``adjust(bars, as_of=t)`` uses only events dated on or before ``t`` and
returns only rows dated on or before ``t``: the series a trader saw at the close of ``t``.
The latest row is never changed because backward factors only touch rows *before* an event.

Incremental contract (for the Dagster asset):

1. ``update = adjust_session(previous_adjusted, new_session_raw)``.
2. ``update.session`` holds the new session's rows with ``adj_* = raw`` (valid for every
   symbol, because as of the newest date that row is never adjusted).
3. ``update.rebuild`` names the symbols whose new row carries a dividend or split: every
   earlier row of theirs changes, so re-run ``adjust`` on their full raw history (new session
   included) and replace their rows (then re-clean them). Every other symbol's stored rows
   stay valid untouched. A symbol with no stored history simply starts with ``adj = raw``.
4. When raw history itself was revised, compare ``corporate_actions`` of the old and new raw
   tables with ``symbols_needing_rebuild`` and rebuild those symbols the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

ADJ_PRICE_COLUMNS: tuple[str, ...] = ("adj_open", "adj_high", "adj_low", "adj_close")
ADJ_COLUMNS: tuple[str, ...] = (*ADJ_PRICE_COLUMNS, "adj_volume")
EVENT_COLUMNS: tuple[str, ...] = (
    "symbol", "date", "dividend", "split_ratio", "prev_close", "dividend_factor", "split_factor", "flag",
    "correction",
)
FACTOR_COLUMNS: tuple[str, ...] = (
    "symbol", "date", "dividend_factor", "split_factor", "price_factor", "cum_price_factor", "cum_volume_factor",
)
#: Why an event's factor was neutralised to 1 (``flag`` column; ``<NA>`` when clean).
FLAG_NO_PREV_CLOSE = "no_prev_close"
FLAG_DIVIDEND_TOO_LARGE = "dividend_ge_prev_close"
FLAG_BAD_DIVIDEND = "invalid_dividend"
FLAG_BAD_SPLIT = "invalid_split_ratio"
#: No real split exceeds 50-for-1 or 1-for-50; beyond that a ratio is mis-scaled, so it adjusts nothing.
MAX_SPLIT_RATIO = 50.0

_DAY_SPAN = 1_000_000  # days per symbol slot in the combined (symbol, day) sort key


def _days(dates) -> np.ndarray:
    """Dates as int64 day numbers: any datetime unit (the real set is ``[us]``) maps the same."""
    return np.asarray(pd.to_datetime(dates).to_numpy(dtype="datetime64[D]")).view("int64")


def _keys(codes: np.ndarray, days: np.ndarray) -> np.ndarray:
    """One sortable int64 per (symbol, day), so per-symbol lookups become a single searchsorted."""
    return codes.astype(np.int64) * _DAY_SPAN + days + _DAY_SPAN // 2


def _previous_in_symbol(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The previous row's value within the same symbol (rows sorted by symbol, date), else NaN."""
    out = np.full(len(values), np.nan)
    if len(values) > 1:
        same = codes[1:] == codes[:-1]
        out[1:] = np.where(same, values[:-1], np.nan)
    return out


def _sorted_order(bars: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Row order by (symbol, date) and the sorted keys; refuses duplicate (symbol, date) rows."""
    codes, _ = pd.factorize(bars["symbol"], sort=True)
    keys = _keys(codes, _days(bars["date"]))
    order = np.arange(len(keys)) if np.all(keys[1:] >= keys[:-1]) else np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    dup = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
    if dup.size:
        row = bars.iloc[order[dup[0]]]
        raise ValueError(f"duplicate bar for ({row['symbol']}, {row['date']:%Y-%m-%d}); deduplicate before adjusting")
    return order, sorted_keys


def usable_split(ratio: np.ndarray) -> np.ndarray:
    """Split ratios that may adjust history: finite and within 1:``MAX_SPLIT_RATIO`` .. ``MAX_SPLIT_RATIO``:1."""
    ratio = np.asarray(ratio, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(ratio) & (ratio >= 1 / MAX_SPLIT_RATIO) & (ratio <= MAX_SPLIT_RATIO)


def dividend_share(dividend: np.ndarray, ratio: np.ndarray, prev_close: np.ndarray) -> np.ndarray:
    """``D * r / close[t-1]``: the share of the previous close a distribution takes away.

    The backward dividend factor is ``1 - dividend_share``, so a share of 1 or more would make
    every earlier adjusted price zero or negative. An unusable split counts as ``r = 1``.
    """
    ratio = np.asarray(ratio, dtype=np.float64)
    r = np.where(usable_split(ratio), ratio, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(dividend, dtype=np.float64) * r / np.asarray(prev_close, dtype=np.float64)


def corporate_actions(bars: pd.DataFrame) -> pd.DataFrame:
    """Events table from raw bars: one row per (symbol, date) with a dividend or a split.

    ``prev_close`` is the raw close of the symbol's previous row (its previous traded session;
    after a gap that is the last close before the gap). An event that cannot be priced gets a
    neutral factor of 1 and a ``flag`` instead of poisoning the whole history: a dividend on a
    symbol's first row (``no_prev_close``), a dividend at least the previous close
    (``dividend_ge_prev_close``), a negative/NaN dividend, a split ratio that is not
    ``usable_split``. ``bars`` may carry a ``correction`` column (see ``corrections``): it is
    copied onto the event as its provenance.
    """
    order, sorted_keys = _sorted_order(bars)
    close = bars["close"].to_numpy(dtype=np.float64)[order]
    div = bars["dividend"].to_numpy(dtype=np.float64)[order]
    ratio = bars["split_ratio"].to_numpy(dtype=np.float64)[order]
    prev_close = _previous_in_symbol(close, sorted_keys // _DAY_SPAN)

    is_event = (div != 0) | (ratio != 1)  # NaN compares unequal, so NaN rows surface as flagged events
    idx = np.flatnonzero(is_event)
    div, ratio, prev = div[idx], ratio[idx], prev_close[idx]
    bad_split = ~usable_split(ratio)
    split_factor = np.where(bad_split, 1.0, 1.0 / np.where(bad_split, 1.0, ratio))
    raw_div_factor = 1.0 - dividend_share(div, ratio, prev)
    has_div = div != 0
    bad_div = has_div & ~(np.isfinite(div) & (div > 0))
    no_prev = has_div & ~bad_div & ~np.isfinite(prev)
    too_large = has_div & ~bad_div & ~no_prev & ~(raw_div_factor > 0)
    div_ok = has_div & ~(bad_div | no_prev | too_large)
    dividend_factor = np.where(div_ok, raw_div_factor, 1.0)

    flag = np.full(idx.size, None, dtype=object)
    for mask, name in ((bad_split, FLAG_BAD_SPLIT), (too_large, FLAG_DIVIDEND_TOO_LARGE),
                       (no_prev, FLAG_NO_PREV_CLOSE), (bad_div, FLAG_BAD_DIVIDEND)):
        flag[mask] = name
    rows = order[idx]
    correction = (bars["correction"].iloc[rows].to_numpy(dtype=object) if "correction" in bars
                  else np.full(idx.size, None, dtype=object))
    return pd.DataFrame(
        {
            "symbol": bars["symbol"].iloc[rows].to_numpy(dtype=object),
            "date": pd.to_datetime(bars["date"].iloc[rows].to_numpy()).astype("datetime64[ns]"),
            "dividend": div,
            "split_ratio": ratio,
            "prev_close": prev,
            "dividend_factor": dividend_factor,
            "split_factor": split_factor,
            "flag": pd.array(flag, dtype="string"),
            "correction": pd.array(correction, dtype="string"),
        }
    ).astype({"symbol": "string"})


def adjustment_factors(events: pd.DataFrame, as_of=None) -> pd.DataFrame:
    """Cumulative backward factors per (symbol, event date), using events dated <= ``as_of``.

    ``cum_price_factor`` on an event row multiplies every price dated before that event and on
    or after the symbol's previous event: the product of this and all later event factors.
    ``cum_volume_factor`` is the matching product of split ratios. Accepts the events table or
    a previous factors table (both carry the per-event factors), so re-cutting ``as_of`` never
    needs the raw bars again.
    """
    ev = events.loc[:, ["symbol", "date", "dividend_factor", "split_factor"]]
    # An empty events table read back from storage may carry object columns: type it.
    ev = ev.astype({"dividend_factor": "float64", "split_factor": "float64"})
    ev = ev.assign(date=pd.to_datetime(ev["date"]).astype("datetime64[ns]"))
    if as_of is not None:
        ev = ev[ev["date"] <= pd.Timestamp(as_of)]
    ev = ev.sort_values(["symbol", "date"], kind="stable", ascending=[True, False]).reset_index(drop=True)
    ev["price_factor"] = ev["dividend_factor"] * ev["split_factor"]
    grouped = ev.groupby("symbol", sort=False)
    ev["cum_price_factor"] = grouped["price_factor"].cumprod()
    ev["cum_volume_factor"] = (1.0 / ev["split_factor"]).groupby(ev["symbol"], sort=False).cumprod()
    return ev.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)[list(FACTOR_COLUMNS)]


def adjust(bars: pd.DataFrame, factors: pd.DataFrame | None = None, as_of=None) -> pd.DataFrame:
    """Raw bars plus ``adj_open/high/low/close`` and ``adj_volume`` (float64), as of ``as_of``.

    ``as_of`` defaults to the latest date in ``bars``; rows after it are dropped because a
    trader at ``as_of`` had not seen them. ``factors`` may be an events or factors table
    (e.g. kept from a previous run); it is re-cut to ``as_of`` here. Each row's multiplier is
    found with one ``searchsorted`` over (symbol, date) keys, so cost is O(n log events).
    """
    if len(bars) == 0:
        out = bars.copy()
        for col in ADJ_COLUMNS:
            out[col] = pd.Series(dtype="float64")
        return out
    cutoff = pd.Timestamp(as_of) if as_of is not None else pd.to_datetime(bars["date"]).max()
    keep = (pd.to_datetime(bars["date"]) <= cutoff).to_numpy()
    out = bars.loc[keep].copy() if not keep.all() else bars.copy()
    source = corporate_actions(out) if factors is None else factors
    fac = adjustment_factors(source, as_of=cutoff)

    row_codes, symbols = pd.factorize(out["symbol"], sort=True)
    ev_codes = pd.Index(symbols).get_indexer(fac["symbol"])  # -1: events of symbols not in bars
    ev_keys = _keys(ev_codes, _days(fac["date"]))
    ev_order = np.argsort(ev_keys, kind="stable")
    ev_keys, ev_codes = ev_keys[ev_order], ev_codes[ev_order]
    cum_price = fac["cum_price_factor"].to_numpy(dtype=np.float64)[ev_order]
    cum_volume = fac["cum_volume_factor"].to_numpy(dtype=np.float64)[ev_order]
    row_keys = _keys(row_codes, _days(out["date"]))
    nxt = np.searchsorted(ev_keys, row_keys, side="right")  # first event strictly after the row
    hit = nxt < len(ev_keys)
    safe = np.where(hit, nxt, 0)
    if len(ev_keys):
        hit &= ev_codes[safe] == row_codes
    price_mult = np.where(hit, cum_price[safe] if len(ev_keys) else 1.0, 1.0)
    volume_mult = np.where(hit, cum_volume[safe] if len(ev_keys) else 1.0, 1.0)

    for raw, adj in zip(("open", "high", "low", "close"), ADJ_PRICE_COLUMNS):
        out[adj] = out[raw].to_numpy(dtype=np.float64) * price_mult
    out["adj_volume"] = out["volume"].to_numpy(dtype=np.float64) * volume_mult
    return out


def symbols_needing_rebuild(old_events: pd.DataFrame, new_events: pd.DataFrame) -> set[str]:
    """Symbols whose event set changed: an event added, removed, or its factors revised.

    Comparing factors (not just dates) catches a revised raw close before an ex-date, which
    changes the dividend factor without changing the event list.
    """
    cols = ["symbol", "date", "dividend_factor", "split_factor"]
    old = old_events.loc[:, cols].assign(date=lambda f: pd.to_datetime(f["date"]).astype("datetime64[ns]"))
    new = new_events.loc[:, cols].assign(date=lambda f: pd.to_datetime(f["date"]).astype("datetime64[ns]"))
    for frame in (old, new):
        frame["symbol"] = frame["symbol"].astype("string")
    merged = old.merge(new, on=["symbol", "date"], how="outer", suffixes=("_old", "_new"), indicator=True)
    one_sided = merged["_merge"] != "both"
    changed = np.zeros(len(merged), dtype=bool)
    for col in ("dividend_factor", "split_factor"):
        a, b = merged[f"{col}_old"].to_numpy(dtype=float), merged[f"{col}_new"].to_numpy(dtype=float)
        changed |= ~np.isclose(a, b, rtol=1e-12, atol=0.0, equal_nan=True)
    return set(merged.loc[one_sided.to_numpy() | changed, "symbol"].astype(str))


@dataclass(frozen=True)
class SessionUpdate:
    """Result of appending one session: its adjusted rows and who needs a full rebuild."""

    session: pd.DataFrame
    rebuild: set[str] = field(default_factory=set)


def adjust_session(previous: pd.DataFrame, session: pd.DataFrame) -> SessionUpdate:
    """Adjust one new session against stored history without recomputing that history.

    As of the new session its own row is never adjusted, so ``adj_* = raw`` for every symbol;
    stored rows of a symbol stay valid unless the new row carries a dividend or split, in
    which case that symbol is listed in ``rebuild`` (see the module docstring's contract).
    ``previous`` only supplies each symbol's last stored date: a session that is not strictly
    after it is refused, because replaying a day means history may have changed.
    """
    dates = pd.to_datetime(session["date"]).unique()
    if len(dates) > 1:
        raise ValueError(f"adjust_session takes one session, got {len(dates)} dates; use adjust() for bulk")
    out = session.copy()
    if len(out) == 0:
        for col in ADJ_COLUMNS:
            out[col] = pd.Series(dtype="float64")
        return SessionUpdate(out, set())
    day = pd.Timestamp(dates[0])
    if len(previous):
        last = pd.to_datetime(previous["date"]).groupby(previous["symbol"].astype(str).to_numpy()).max()
        seen = last.reindex(out["symbol"].astype(str).to_numpy())
        stale = seen.index[(seen >= day).to_numpy()]
        if len(stale):
            raise ValueError(
                f"session {day:%Y-%m-%d} is not after stored history for {sorted(set(stale))[:5]}; rebuild instead"
            )
    for raw, adj in zip(("open", "high", "low", "close"), ADJ_PRICE_COLUMNS):
        out[adj] = out[raw].to_numpy(dtype=np.float64)
    out["adj_volume"] = out["volume"].to_numpy(dtype=np.float64)
    has_event = ((out["dividend"] != 0) | (out["split_ratio"] != 1)).to_numpy()
    return SessionUpdate(out, set(out.loc[has_event, "symbol"].astype(str)))
