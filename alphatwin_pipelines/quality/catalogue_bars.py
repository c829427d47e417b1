"""Rules a single bar can break on its own: prices, OHLC ordering, volume, corporate actions.

Each needs no history, so they run first; their bar-rejecting ERROR verdicts decide which
rows the lookback rules may trust. The corporate-action rules have ``scope="event"``: a bad
split ratio or dividend is quarantined on its own while the bar's prices, if they pass every
price rule, are kept (flagged), because a garbled event says nothing about the traded prices.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from alphatwin_pipelines.adjustment import MAX_SPLIT_RATIO
from alphatwin_pipelines.quality.rules import Rule, RuleContext, render_columns
from alphatwin_pipelines.schema import PRICE_COLUMNS

Predicate = Callable[[pd.DataFrame, RuleContext, str], np.ndarray]

__all__ = ["MAX_SPLIT_RATIO", "RULES"]

MAX_PRICE = 1_000_000.0
MIN_PRICE = 1e-4
MAX_DECIMALS = 6
MAX_RANGE = 0.5  # (high - low) / low
INT64_LIMIT = float(2**63)


def _values(frame: pd.DataFrame, column: str) -> np.ndarray:
    return frame[column].to_numpy(dtype=np.float64)


def _column_rule(rule_id: str, severity: str, description: str, columns: tuple[str, ...],
                 predicate: Predicate, scope: str = "bar") -> Rule:
    """A rule that tests each named column alone; the offending value names only failing columns."""

    def masks(frame: pd.DataFrame, ctx: RuleContext) -> dict[str, np.ndarray]:
        return {c: np.asarray(predicate(frame, ctx, c), dtype=bool) for c in columns}

    def check(frame: pd.DataFrame, ctx: RuleContext) -> pd.Series:
        return pd.Series(np.logical_or.reduce(list(masks(frame, ctx).values())), index=frame.index)

    def explain(frame: pd.DataFrame, ctx: RuleContext, rows: np.ndarray) -> pd.Series:
        return render_columns(ctx.raw, columns, rows, masks(frame, ctx))

    return Rule(rule_id, severity, description, check, columns=columns, explain=explain, scope=scope)


def _compare_rule(rule_id: str, smaller: str, larger: str, what: str) -> Rule:
    """OHLC ordering: ``smaller`` must not exceed ``larger``."""

    def check(frame: pd.DataFrame, ctx: RuleContext) -> pd.Series:
        return pd.Series(_values(frame, smaller) > _values(frame, larger), index=frame.index)

    def explain(frame: pd.DataFrame, ctx: RuleContext, rows: np.ndarray) -> pd.Series:
        a, b = _values(frame, smaller)[rows], _values(frame, larger)[rows]
        return pd.Series([f"{smaller}={x:.10g} > {larger}={y:.10g}" for x, y in zip(a, b)], index=rows)

    description = (f"The {smaller} is above the {larger}, which no real trading day allows ({what}); "
                   f"re-fetch the bar or fix swapped columns in the source.")
    return Rule(rule_id, "ERROR", description, check, columns=(smaller, larger), explain=explain)


def _nan(frame, ctx, column):
    return np.isnan(_values(frame, column)) & ~ctx.unparseable(column)


def _infinite(frame, ctx, column):
    return np.isinf(_values(frame, column))


def _non_positive(frame, ctx, column):
    return _values(frame, column) <= 0


def _implausible_level(frame, ctx, column):
    v = _values(frame, column)
    return np.isfinite(v) & (v > 0) & ((v > MAX_PRICE) | (v < MIN_PRICE))


def _too_precise(frame, ctx, column):
    v = _values(frame, column)
    scaled = np.where(np.isfinite(v) & (v > 0) & (v < MAX_PRICE), v, 0.0) * 10.0**MAX_DECIMALS
    return np.abs(scaled - np.round(scaled)) > 1e-3


def _negative(frame, ctx, column):
    return _values(frame, column) < 0


def _fractional(frame, ctx, column):
    v = _values(frame, column)
    finite = np.where(np.isfinite(v), v, 0.0)
    return finite != np.floor(finite)


def _volume_non_finite(frame, ctx, column):
    v = _values(frame, column)
    return (np.isnan(v) & ~ctx.unparseable(column)) | np.isinf(v) | (np.abs(v) >= INT64_LIMIT)


def _zero(frame, ctx, column):
    return _values(frame, column) == 0


def _split_out_of_bounds(frame, ctx, column):
    v = _values(frame, column)
    return (v > 0) & ((v < 1 / MAX_SPLIT_RATIO) | (v > MAX_SPLIT_RATIO))


def _split_non_standard(frame, ctx, column):
    """Standard splits are p-for-q with q <= 10 (2.0, 1.5, 0.333...); anything else is unusual."""
    v = _values(frame, column)
    usable = (v >= 1 / MAX_SPLIT_RATIO) & (v <= MAX_SPLIT_RATIO) & (v != 1.0)
    standard = np.zeros(len(v), dtype=bool)
    for shares_before in range(1, 11):
        scaled = np.where(usable, v, 1.0) * shares_before
        standard |= np.abs(scaled - np.round(scaled)) <= 1e-4 * np.maximum(scaled, 1.0)
    return usable & ~standard


def _range_absurd(frame: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    high, low = _values(frame, "high"), _values(frame, "low")
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = (high - low) / low
    return pd.Series((low > 0) & np.isfinite(high) & (spread > MAX_RANGE), index=frame.index)


def _explain_range(frame: pd.DataFrame, ctx: RuleContext, rows: np.ndarray) -> pd.Series:
    high, low = _values(frame, "high")[rows], _values(frame, "low")[rows]
    return pd.Series([f"high={h:.10g}, low={lo:.10g} ({h / lo - 1:.0%} range)" for h, lo in zip(high, low)], index=rows)


OHLC = PRICE_COLUMNS

RULES: tuple[Rule, ...] = (
    _column_rule("price.missing", "ERROR",
                 "An open/high/low/close price is missing (NaN), so returns cannot be computed; re-fetch the bar.",
                 OHLC, _nan),
    _column_rule("price.infinite", "ERROR",
                 "A price is infinite, usually a division by zero in the source; re-fetch the bar or fix the adapter.",
                 OHLC, _infinite),
    _column_rule("price.non_positive", "ERROR",
                 "A price is zero or negative, which a listed stock cannot trade at; re-fetch the bar "
                 "(zeros often stand for 'no trade').",
                 OHLC, _non_positive),
    _compare_rule("ohlc.low_above_open", "low", "open", "the open is a trade inside the day's range"),
    _compare_rule("ohlc.low_above_close", "low", "close", "the close is a trade inside the day's range"),
    _compare_rule("ohlc.open_above_high", "open", "high", "the open is a trade inside the day's range"),
    _compare_rule("ohlc.close_above_high", "close", "high", "the close is a trade inside the day's range"),
    _compare_rule("ohlc.low_above_high", "low", "high", "the range would be negative"),
    Rule("ohlc.range_absurd", "WARNING",
         f"The day's high is more than {MAX_RANGE:.0%} above its low, which is rare outside data errors; "
         "compare the bar with a second source.",
         _range_absurd, columns=("high", "low"), explain=_explain_range),
    _column_rule("price.implausible_level", "WARNING",
                 f"A price is above {MAX_PRICE:,.0f} or below {MIN_PRICE}, far outside what US stocks trade at; "
                 "check for a unit (cents vs dollars) or scaling error.",
                 OHLC, _implausible_level),
    _column_rule("price.precision_absurd", "WARNING",
                 f"A price has more than {MAX_DECIMALS} decimals, so it looks computed (adjusted or averaged) "
                 "rather than traded; store raw traded prices.",
                 OHLC, _too_precise),
    _column_rule("volume.negative", "ERROR",
                 "The volume is negative, which is impossible; re-fetch the bar or fix the adapter's parsing.",
                 ("volume",), _negative),
    _column_rule("volume.fractional", "ERROR",
                 "The volume has a fractional part but counts whole shares; it is likely a price or an "
                 "adjusted volume in the wrong column, so fix the source mapping.",
                 ("volume",), _fractional),
    _column_rule("volume.non_finite", "ERROR",
                 "The volume is missing, infinite or too large for a 64-bit integer; re-fetch the bar "
                 "(use 0 only if no shares traded).",
                 ("volume",), _volume_non_finite),
    _column_rule("volume.zero", "WARNING",
                 "No shares traded, so the prices are likely carried forward rather than traded; "
                 "confirm a halt or exclude the day from signals.",
                 ("volume",), _zero),
    _column_rule("split.missing", "ERROR",
                 "The split ratio is missing; the bar is kept with no split and the event quarantined. "
                 "Write 1.0 on rows without a split, or add the split to the corrections file.",
                 ("split_ratio",), _nan, scope="event"),
    _column_rule("split.non_positive", "ERROR",
                 "The split ratio is zero or negative, which would destroy or invert every adjusted price; the bar "
                 "is kept with no split and the event quarantined. Use new-shares-per-old-share (2.0 for 2-for-1, "
                 "0.1 for 1-for-10), in the source or the corrections file.",
                 ("split_ratio",), _non_positive, scope="event"),
    _column_rule("split.out_of_bounds", "ERROR",
                 f"The split ratio is beyond 1:{MAX_SPLIT_RATIO:.0f} or {MAX_SPLIT_RATIO:.0f}:1, larger than any "
                 "real split, so it is almost certainly mis-scaled; the bar is kept, the event quarantined and it "
                 "adjusts nothing until the corrections file states the announced ratio.",
                 ("split_ratio",), lambda f, c, col: _split_out_of_bounds(f, c, col) | _infinite(f, c, col),
                 scope="event"),
    _column_rule("split.non_standard", "WARNING",
                 "The split ratio is not a simple p-for-q ratio (such as 2, 1.5 or 1/3), which usually means a "
                 "spin-off or stock-dividend factor; confirm it before it adjusts history.",
                 ("split_ratio",), _split_non_standard),
    _column_rule("dividend.missing", "ERROR",
                 "The dividend is missing or infinite; the bar is kept with no dividend and the event quarantined. "
                 "Write 0 on rows without a dividend, or add the payment to the corrections file.",
                 ("dividend",), lambda f, c, col: _nan(f, c, col) | _infinite(f, c, col), scope="event"),
    _column_rule("dividend.negative", "ERROR",
                 "The dividend is negative, which a cash distribution cannot be; the bar is kept with no dividend "
                 "and the event quarantined. Fix the sign or the column mapping.",
                 ("dividend",), _negative, scope="event"),
)
