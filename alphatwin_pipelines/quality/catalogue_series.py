"""Rules that judge a bar against the symbol's own recent history.

They run on the panel (history + the partition rows that pass every row-local rule), so a
daily partition is judged with the same 60-session context as a backfill. Statistics are
robust (rolling median and median absolute deviation of the *previous* sessions) so one bad
print cannot hide another. The reference bar of a row is the symbol's previous panel row,
whatever a lookback rule said about it: the re-check of validated rows rebuilds the same
panel (see ``stages.quality.residual_errors``), so both passes judge a bar against the same
bar and the rules reach a fixpoint.

A distribution is judged against the previous close, the denominator of its backward factor
``1 - D * r / close[t-1]``: a spin-off routinely pays more than the ex-date close (EBAY paid
38.39 in PayPal shares and closed at 28.57), never more than the close before it. An event is
also judged against the prices around it: a real split or spin-off explains the raw move, so
the adjusted move is ordinary; a wrong one (SO 2001-04-03's spurious split 1.5, GNRC
2010-02-12's 0.3036 on continuous prices) makes the adjusted move the absurd one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from alphatwin_pipelines.adjustment import dividend_share
from alphatwin_pipelines.calendar import all_sessions
from alphatwin_pipelines.quality.rules import Panel, Rule, RuleContext

WINDOW = 60
MIN_HISTORY = 20
#: Sessions before a bar that its return baseline reads: the MAD is a median over ``WINDOW``
#: deviations, each from a median over its own ``WINDOW`` returns, each needing the close
#: before it, and the reversal test reads the previous bar's baseline. With less history a
#: daily run would judge a bar against a shorter baseline than a range run does.
BASELINE_LOOKBACK = 2 * WINDOW + 1
MAD_FLOOR = 0.002  # a log-return MAD below 0.2% (e.g. a stale stretch) would flag every tick
EXTREME_MADS, EXTREME_MOVE = 30.0, float(np.log(5.0))
OUTLIER_MADS, OUTLIER_MOVE = 12.0, 0.05
VOLUME_MADS, VOLUME_MULTIPLE, VOLUME_MAD_FLOOR = 10.0, 5.0, 0.05
STALE_SESSIONS = 5
#: Share of the previous close above which a distribution is named a likely spin-off or special
#: dividend. Regular quarterly dividends stay far below it (27,308 of the 27,729 S&P 500
#: dividends of 1999-2021 take less than 2 % of the previous close, all but 79 less than 10 %);
#: the 79 above it are spin-offs (PayPal, AbbVie, Keysight, ...) and special dividends.
LARGE_DISTRIBUTION = 0.10
#: Smallest adjusted move (a factor of 1.5 up or down) an event must create to be called absurd:
#: a real split or spin-off on a day of big news still leaves its adjusted move well inside it.
EVENT_MOVE = float(np.log(1.5))


@dataclass(frozen=True)
class ReturnStats:
    """Per-panel-row returns and their robust baseline, shared by the return and gap rules."""

    prev_close: np.ndarray
    adjusted: np.ndarray
    centre: np.ndarray
    scale: np.ndarray
    extreme: np.ndarray
    outlier: np.ndarray
    gap: np.ndarray
    gap_outlier: np.ndarray
    implied: np.ndarray  # the adjusted close's move: what every feature sees after the event
    event_centre: np.ndarray  # ``centre``, 0 where the symbol is too young for a baseline (neutral)
    event_scale: np.ndarray
    event_not_in_prices: np.ndarray


def _panel(ctx: RuleContext) -> Panel:
    if ctx.panel is None:
        raise RuntimeError("lookback rules need the panel built by quality.validate")
    return ctx.panel


def _presence(ctx: RuleContext) -> Panel:
    if ctx.presence is None:
        raise RuntimeError("the missing-session rule needs the presence panel built by quality.validate")
    return ctx.presence


def _robust_baseline(panel: Panel, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and MAD of the previous ``WINDOW`` values (the current row never judges itself)."""
    median = panel.rolling_median(values, WINDOW, MIN_HISTORY)
    mad = panel.rolling_median(np.abs(values - median), WINDOW, MIN_HISTORY)
    return panel.previous(median), panel.previous(mad)


def _log_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(numerator / denominator)


def _return_stats(panel: Panel) -> ReturnStats:
    close, open_ = panel.values("close"), panel.values("open")
    split, dividend = panel.values("split_ratio"), panel.values("dividend")
    prev_close = panel.previous(close)
    raw, adjusted = _log_ratio(close, prev_close), _log_ratio((close + dividend) * split, prev_close)
    raw_gap, gap = _log_ratio(open_, prev_close), _log_ratio((open_ + dividend) * split, prev_close)
    centre, mad = _robust_baseline(panel, adjusted)
    scale = np.maximum(mad, MAD_FLOOR)
    # A young listing (fewer than ~2 x MIN_HISTORY sessions) has no baseline yet; the event and
    # extreme-move tests judge it against a neutral one (a median move of 0 at the MAD floor), so a
    # bad print or an unrecorded split in its first sessions is still caught (GNRC split on its
    # second session).
    young = ~(np.isfinite(centre) & np.isfinite(mad))
    event_centre, event_scale = np.where(young, 0.0, centre), np.where(young, MAD_FLOOR, scale)

    def beyond(mads: float, move: float, *series: np.ndarray, neutral: bool = False) -> np.ndarray:
        """Unusual only if every reading (raw and split/dividend-adjusted) is unusual."""
        middle, spread = (event_centre, event_scale) if neutral else (centre, scale)
        out = np.isfinite(middle)
        for values in series:
            distance = np.abs(values - middle)
            out &= (distance > mads * spread) & (distance > move)
        return out

    # The adjusted close's move, close * r / (close[t-1] - D * r): the raw move with the event's
    # backward factors applied. A distribution at or above the previous close adjusts nothing
    # (its own ERROR quarantines the event), so it implies nothing here.
    share = dividend_share(dividend, split, prev_close)
    with np.errstate(divide="ignore", invalid="ignore"):
        implied = np.where(share < 1.0, raw + np.log(split) - np.log1p(-share), np.nan)
    event = ((dividend > 0) | (split != 1.0)) & np.isfinite(implied)
    # The event is what makes the move absurd: the adjusted move is extreme and farther from the
    # symbol's median than the prices alone moved (a real split or spin-off brings it back in).
    distance = np.abs(implied - event_centre)
    event_not_in_prices = (event & (distance > OUTLIER_MADS * event_scale) & (distance > EVENT_MOVE)
                           & (distance > np.abs(raw - event_centre)))
    extreme_first = beyond(EXTREME_MADS, EXTREME_MOVE, adjusted, raw, neutral=True)
    outlier_first = beyond(OUTLIER_MADS, OUTLIER_MOVE, adjusted, raw)
    # The session after a bad print moves back by the same amount; measured from the close
    # before the bad print it is ordinary, so it is a reversal, not a second outlier. A young
    # listing has no outlier baseline: there the two-day move only has to be short of extreme.
    after_outlier = panel.previous((outlier_first | extreme_first).astype(float)) == 1.0
    prev_adjusted = panel.previous(adjusted)

    def back_again(two_day: np.ndarray) -> np.ndarray:
        return np.where(young, ~beyond(EXTREME_MADS, EXTREME_MOVE, two_day, neutral=True),
                        ~beyond(OUTLIER_MADS, OUTLIER_MOVE, two_day))

    reversal = after_outlier & back_again(adjusted + prev_adjusted)
    gap_reversal = after_outlier & back_again(gap + prev_adjusted)
    return ReturnStats(
        prev_close=prev_close,
        adjusted=adjusted,
        centre=centre,
        scale=scale,
        extreme=extreme_first & ~reversal,
        outlier=outlier_first & ~extreme_first & ~reversal & ~event_not_in_prices,  # named by the event rule
        gap=gap,
        gap_outlier=beyond(OUTLIER_MADS, OUTLIER_MOVE, gap, raw_gap) & ~gap_reversal,
        implied=implied,
        event_centre=event_centre,
        event_scale=event_scale,
        event_not_in_prices=event_not_in_prices,
    )


def return_stats(ctx: RuleContext) -> ReturnStats:
    panel = _panel(ctx)
    return panel.memo("returns", lambda: _return_stats(panel))


def _panel_check(flags_of, panel_of=_panel):
    def check(frame: pd.DataFrame, ctx: RuleContext) -> pd.Series:
        return pd.Series(panel_of(ctx).to_partition(flags_of(ctx)), index=frame.index)

    return check


def _explain_return(frame: pd.DataFrame, ctx: RuleContext, rows: np.ndarray) -> pd.Series:
    stats, panel = return_stats(ctx), _panel(ctx)
    close, prev = panel.at_rows(panel.values("close"), rows), panel.at_rows(stats.prev_close, rows)
    move = panel.at_rows(stats.adjusted, rows)
    mads = np.abs(move - panel.at_rows(stats.event_centre, rows)) / panel.at_rows(stats.event_scale, rows)
    text = [f"close={c:.10g} vs previous close={p:.10g} ({np.expm1(m):+.0%}, {z:.0f} MADs)"
            for c, p, m, z in zip(close, prev, move, mads)]
    return pd.Series(text, index=rows)


def _explain_gap(frame: pd.DataFrame, ctx: RuleContext, rows: np.ndarray) -> pd.Series:
    stats, panel = return_stats(ctx), _panel(ctx)
    opens, prev = panel.at_rows(panel.values("open"), rows), panel.at_rows(stats.prev_close, rows)
    gap = panel.at_rows(stats.gap, rows)
    text = [f"open={o:.10g} vs previous close={p:.10g} ({np.expm1(g):+.0%})" for o, p, g in zip(opens, prev, gap)]
    return pd.Series(text, index=rows)


def _explain_event(frame: pd.DataFrame, ctx: RuleContext, rows: np.ndarray) -> pd.Series:
    stats, panel = return_stats(ctx), _panel(ctx)
    split, dividend = (panel.at_rows(panel.values(c), rows) for c in ("split_ratio", "dividend"))
    close, prev = panel.at_rows(panel.values("close"), rows), panel.at_rows(stats.prev_close, rows)
    implied = panel.at_rows(stats.implied, rows)
    mads = np.abs(implied - panel.at_rows(stats.event_centre, rows)) / panel.at_rows(stats.event_scale, rows)
    text = [f"split_ratio={r:.10g}, dividend={d:.10g} imply an adjusted move of {np.expm1(m):+.0%} ({z:.0f} MADs) "
            f"while the close moved {c / p - 1:+.0%} (previous close={p:.10g}, close={c:.10g})"
            for r, d, c, p, m, z in zip(split, dividend, close, prev, implied, mads)]
    return pd.Series(text, index=rows)


def _volume_baseline(panel: Panel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log volume with its prior median and MAD (log, because volume is multiplicative)."""
    volume = np.log1p(np.maximum(panel.values("volume"), 0.0))
    return (volume, *_robust_baseline(panel, volume))


def _volume_spikes(panel: Panel) -> np.ndarray:
    volume, centre, mad = panel.memo("volume_baseline", lambda: _volume_baseline(panel))
    threshold = np.maximum(VOLUME_MADS * np.maximum(mad, VOLUME_MAD_FLOOR), np.log(VOLUME_MULTIPLE))
    return np.isfinite(centre) & (volume - centre > threshold)


def _explain_volume(frame: pd.DataFrame, ctx: RuleContext, rows: np.ndarray) -> pd.Series:
    panel = _panel(ctx)
    _, centre, _ = panel.memo("volume_baseline", lambda: _volume_baseline(panel))
    shares, typical = panel.at_rows(panel.values("volume"), rows), np.expm1(panel.at_rows(centre, rows))
    text = [f"volume={v:.0f} vs median {m:.0f} ({v / max(m, 1.0):.0f}x)" for v, m in zip(shares, typical)]
    return pd.Series(text, index=rows)


def _stale_run_length(panel: Panel) -> np.ndarray:
    """How many consecutive sessions (ending here) printed exactly the same OHLC."""
    same = np.ones(len(panel), dtype=bool)
    for column in ("open", "high", "low", "close"):
        values = panel.values(column)
        same &= values == panel.previous(values)
    index = np.arange(len(panel))
    run_start = np.maximum.accumulate(np.where(~same, index, 0)) if len(panel) else index
    return index - run_start + 1


def _explain_stale(frame: pd.DataFrame, ctx: RuleContext, rows: np.ndarray) -> pd.Series:
    panel = _panel(ctx)
    runs = panel.at_rows(panel.memo("stale", lambda: _stale_run_length(panel)), rows)
    ohlc = [panel.at_rows(panel.values(c), rows) for c in ("open", "high", "low", "close")]
    text = [f"OHLC={o:.10g}/{h:.10g}/{lo:.10g}/{c:.10g} unchanged for {n} sessions"
            for o, h, lo, c, n in zip(*ohlc, runs)]
    return pd.Series(text, index=rows)


def _distribution_share(panel: Panel) -> np.ndarray:
    """``D * r / close[t-1]`` per panel row (NaN without a previous close)."""
    return dividend_share(panel.values("dividend"), panel.values("split_ratio"), panel.previous(panel.values("close")))


def _distribution_flags(ctx: RuleContext, too_large: bool) -> np.ndarray:
    panel = _panel(ctx)
    share = panel.memo("distribution_share", lambda: _distribution_share(panel))
    dividend = panel.values("dividend")
    with np.errstate(invalid="ignore"):
        if too_large:
            return (dividend > 0) & (share >= 1.0)
        return (dividend > 0) & (share >= LARGE_DISTRIBUTION) & (share < 1.0)


def _explain_distribution(frame: pd.DataFrame, ctx: RuleContext, rows: np.ndarray) -> pd.Series:
    panel = _panel(ctx)
    share = panel.at_rows(panel.memo("distribution_share", lambda: _distribution_share(panel)), rows)
    dividend = panel.at_rows(panel.values("dividend"), rows)
    prev = panel.at_rows(panel.previous(panel.values("close")), rows)
    text = [f"dividend={d:.10g} vs previous close={p:.10g} ({s:.0%})" for d, p, s in zip(dividend, prev, share)]
    return pd.Series(text, index=rows)


def _missing_before(panel: Panel) -> tuple[np.ndarray, np.ndarray]:
    """Session index of each row and how many sessions are missing since the symbol's previous row."""
    sessions = all_sessions().to_numpy()
    position = np.searchsorted(sessions, panel.frame["date"].to_numpy()).astype(np.float64)
    missing = position - panel.previous(position) - 1
    return position, np.where(np.isfinite(missing), missing, 0).astype(np.int64)


def _explain_gap_before(frame: pd.DataFrame, ctx: RuleContext, rows: np.ndarray) -> pd.Series:
    panel = _presence(ctx)
    position, missing = panel.memo("missing", lambda: _missing_before(panel))
    sessions = all_sessions()
    text = [f"{m} session(s) missing since {sessions[int(p) - m - 1]:%Y-%m-%d}"
            for p, m in zip(panel.at_rows(position, rows), panel.at_rows(missing, rows))]
    return pd.Series(text, index=rows)


def missing_session_pairs(panel: Panel) -> pd.DataFrame:
    """(symbol, session) for each session missing just before one of the partition's rows.

    ``panel`` is the presence panel: a row that exists but was rejected for its values does
    not make its session missing (it is reported in quarantine instead).
    """
    position, missing = panel.memo("missing", lambda: _missing_before(panel))
    closing = np.flatnonzero(panel.current & (missing > 0))
    counts = missing[closing]
    symbols = np.repeat(panel.frame["symbol"].to_numpy(dtype=object)[closing], counts)
    first = np.repeat(position[closing].astype(np.int64) - counts, counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    out = pd.DataFrame({"symbol": pd.array(symbols, dtype="string"),
                        "session": all_sessions()[first + offsets].astype("datetime64[ns]")})
    return out.sort_values(["symbol", "session"], kind="stable").reset_index(drop=True)


RULES: tuple[Rule, ...] = (
    Rule("return.extreme_outlier", "ERROR",
         f"The close moved more than {EXTREME_MADS:.0f} MADs from its {WINDOW}-session median return (from 0 at the "
         f"MAD floor for a listing too young to have one) and by a factor above {np.exp(EXTREME_MOVE):.0f} (up or "
         "down) with no split or dividend to explain it, which is "
         "almost always a bad print or an unrecorded split; fix the price or add the split.",
         _panel_check(lambda ctx: return_stats(ctx).extreme), columns=("close",), lookback=BASELINE_LOOKBACK,
         explain=_explain_return),
    Rule("return.outlier", "WARNING",
         f"The close moved more than {OUTLIER_MADS:.0f} MADs from its {WINDOW}-session median return without a "
         "split or dividend; it may be real news, so confirm it against a second source.",
         _panel_check(lambda ctx: return_stats(ctx).outlier), columns=("close",), lookback=BASELINE_LOOKBACK,
         explain=_explain_return),
    Rule("event.not_in_prices", "WARNING",
         f"The split or dividend on this row makes the adjusted close move by a factor above {np.exp(EVENT_MOVE):.1f} "
         f"(up or down) and more than {OUTLIER_MADS:.0f} MADs from its {WINDOW}-session median, farther than the raw "
         "prices moved: the prices do not show the event (a spurious or wrong ratio or amount, or a second event "
         "the provider left out). It still adjusts history; confirm it against the company's announcement or "
         "state the right event in the corrections file.",
         _panel_check(lambda ctx: return_stats(ctx).event_not_in_prices), columns=("split_ratio", "dividend", "close"),
         lookback=BASELINE_LOOKBACK, explain=_explain_event),
    Rule("gap.open_outlier", "WARNING",
         f"The open is more than {OUTLIER_MADS:.0f} return MADs away from the previous close without a split or "
         "dividend; check the open against a second source (a bad open skews intraday features).",
         _panel_check(lambda ctx: return_stats(ctx).gap_outlier), columns=("open",), lookback=BASELINE_LOOKBACK,
         explain=_explain_gap),
    Rule("volume.spike", "WARNING",
         f"The volume is more than {VOLUME_MADS:.0f} MADs (and {VOLUME_MULTIPLE:.0f}x) above its {WINDOW}-session "
         "median on a log scale; confirm the event, or fix a unit error (lots vs shares).",
         _panel_check(lambda ctx: _panel(ctx).memo("volume_spikes", lambda: _volume_spikes(_panel(ctx)))),
         columns=("volume",), lookback=BASELINE_LOOKBACK, explain=_explain_volume),
    Rule("price.stale", "WARNING",
         f"Open, high, low and close have been identical for {STALE_SESSIONS}+ sessions, so the source is likely "
         "repeating its last value; check the symbol is still trading and re-fetch.",
         _panel_check(lambda ctx: _panel(ctx).memo("stale", lambda: _stale_run_length(_panel(ctx))) >= STALE_SESSIONS),
         columns=("open", "high", "low", "close"), lookback=STALE_SESSIONS - 1,
         explain=_explain_stale),
    Rule("dividend.not_below_prev_close", "ERROR",
         "The dividend is at least the previous close, so its backward factor 1 - D/close[t-1] would make "
         "every earlier adjusted price zero or negative; the bar is kept and the event quarantined (it adjusts "
         "nothing). Check for a misplaced decimal, a missing split on the same day, or state the right amount "
         "in the corrections file.",
         _panel_check(lambda ctx: _distribution_flags(ctx, too_large=True)), columns=("dividend",), lookback=1,
         explain=_explain_distribution, scope="event"),
    Rule("dividend.large", "WARNING",
         f"The distribution takes {LARGE_DISTRIBUTION:.0%} or more of the previous close, far above any regular "
         "dividend: it is likely a spin-off (paid in the new company's shares, valued on the ex-date) or a "
         "special dividend. It adjusts history like any dividend; confirm the amount against the company's "
         "announcement.",
         _panel_check(lambda ctx: _distribution_flags(ctx, too_large=False)), columns=("dividend",), lookback=1,
         explain=_explain_distribution),
    Rule("session.gap_before", "WARNING",
         "Sessions are missing between this row and the symbol's previous stored row although it was listed "
         "throughout; backfill the missing dates (the asset check lists them).",
         _panel_check(lambda ctx: _presence(ctx).memo("missing", lambda: _missing_before(_presence(ctx)))[1] > 0,
                      panel_of=_presence),
         columns=("date",), lookback=1, explain=_explain_gap_before),
)
