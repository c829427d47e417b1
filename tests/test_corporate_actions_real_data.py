"""Spin-offs and garbled corporate actions on the real S&P 500 set, through the real stages.

Each case writes one symbol's raw bars around its ex-date into a fresh data directory, then runs
validation, the adjustment factors and cleaning over a few sessions around the event (with the
raw history the lookback rules need before them), as a backfill of that window would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines.corrections import CORRECTIONS_PATH
from alphatwin_pipelines.schema import canonical_to_arrow, to_canonical
from alphatwin_pipelines.stages.cleaning import build_events, clean_sessions
from alphatwin_pipelines.tables import read_adjusted
from alphatwin_pipelines.stages.quality import residual_errors, validate_sessions
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import CLEANED, FACTORS, QUARANTINED, RAW, VALIDATED

# Spin-offs the provider records as a cash distribution on the ex-date, larger than that day's close.
SPIN_OFFS = {
    "EBAY": "2015-07-20",  # PayPal
    "ABT": "2013-01-02",  # AbbVie
    "HPQ": "2015-11-02",  # Hewlett Packard Enterprise
    "JCI": "2012-10-01",  # Tyco (JCI since its 2016 merger): ADT
    "NI": "2015-07-02",  # Columbia Pipeline Group
    "PENN": "2013-11-04",  # Gaming and Leisure Properties
    "DISCK": "2014-08-07",  # the class C share dividend
}
HISTORY_ROWS, BEFORE, AFTER = 80, 5, 5


@dataclass
class Window:
    store: TableStore
    raw: pd.DataFrame  # the symbol's raw rows written, date order
    sessions: pd.DatetimeIndex  # validated, factored and cleaned
    ex_date: pd.Timestamp

    @property
    def ex(self) -> pd.Series:
        return self.raw.loc[self.raw["date"] == self.ex_date].iloc[0]

    @property
    def prev(self) -> pd.Series:
        return self.raw.loc[self.raw["date"] < self.ex_date].iloc[-1]


def run_window(sp500_bars, tmp_path, symbol: str, ex_date: str) -> Window:
    rows = sp500_bars[sp500_bars["symbol"] == symbol].sort_values("date").reset_index(drop=True)
    at = int(np.flatnonzero(rows["date"].to_numpy() == np.datetime64(ex_date))[0])
    raw = to_canonical(rows.iloc[at - HISTORY_ROWS: at + AFTER + 1]).reset_index(drop=True)
    store = TableStore(tmp_path / symbol)
    store.write_sessions(RAW, raw, pd.DatetimeIndex(raw["date"].unique()), to_arrow=canonical_to_arrow)
    sessions = pd.DatetimeIndex(raw["date"].iloc[-(BEFORE + AFTER + 1):])
    report = validate_sessions(store, sessions)
    assert residual_errors(report.validated, report.recheck_context).empty  # the fixpoint holds here too
    build_events(store, sessions)
    clean_sessions(store, sessions)
    return Window(store, raw, sessions, pd.Timestamp(ex_date))


def events_on(window: Window) -> pd.Series:
    events = window.store.read_partitions(FACTORS)
    return events.loc[events["date"] == window.ex_date].iloc[0]


def adjusted_returns(window: Window) -> pd.Series:
    adjusted = read_adjusted(window.store).sort_values("date")
    return adjusted.set_index("date")["adj_close"].pct_change().dropna()


@pytest.mark.parametrize("symbol, ex_date", list(SPIN_OFFS.items()))
def test_spin_off_adjusts_history_by_its_backward_factor(sp500_bars, tmp_path, symbol, ex_date):
    window = run_window(sp500_bars, tmp_path, symbol, ex_date)
    ex, prev = window.ex, window.prev
    assert ex["dividend"] >= ex["close"], "a spin-off the old ex-date-close rule quarantined"

    # The ex-date bar is validated, named as a likely spin-off, and nothing is quarantined.
    assert window.store.read_partitions(QUARANTINED).empty
    validated = window.store.read_partitions(VALIDATED).set_index("date")
    assert validated.loc[window.ex_date, "flags"] == "dividend.large"

    # Its factor, by hand from the bars: 1 - D / close[t-1].
    factor = 1 - ex["dividend"] / prev["close"]
    event = events_on(window)
    assert pd.isna(event["flag"]) and event["dividend_factor"] == pytest.approx(factor, rel=1e-12)
    adjusted = read_adjusted(window.store).set_index("date")
    earlier = window.raw.set_index("date").loc[window.sessions[0]: prev["date"], "close"]
    np.testing.assert_allclose(adjusted.loc[earlier.index, "adj_close"], earlier * factor, rtol=1e-12)
    assert adjusted.loc[window.ex_date, "adj_close"] == ex["close"]

    # No fake crash: the ex-date is a real cleaned bar, and no adjusted day moves by 20 % or more
    # (the quarantined ex-date used to be filled at the previous close: EBAY -57 % the day after).
    cleaned = window.store.read_partitions(CLEANED).set_index("date")
    assert not cleaned["filled"].any() and cleaned.loc[window.ex_date, "close"] == ex["close"]
    moves = adjusted_returns(window)
    assert moves.abs().max() < 0.2, moves.abs().idxmax()


def write_corrections(window: Window, rows: list[str]) -> None:
    path = window.store.data_dir / CORRECTIONS_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("symbol,ex_date,kind,value,reason,source\n" + "".join(f"{r}\n" for r in rows))


def test_ksu_garbled_spin_off_is_quarantined_as_an_event_then_released_by_a_correction(sp500_bars, tmp_path):
    """KSU 2000-07-13: a distribution of 181 after a close of 93.75. With the 1-for-2 reverse split
    that KCSI made with the Stilwell spin-off (missing from the provider), 181 per new share is
    90.50 per old share, and 90.50 + 6.25 / 2 = 93.63: the provider's amount is right, the split
    is what is missing."""
    window = run_window(sp500_bars, tmp_path, "KSU", "2000-07-13")
    ex, prev = window.ex, window.prev
    assert (prev["close"], ex["close"], ex["dividend"]) == (93.75, 6.25, 181.0)

    quarantined = window.store.read_partitions(QUARANTINED)
    assert quarantined[["date", "rule_id", "action"]].values.tolist() == [
        ["2000-07-13", "dividend.not_below_prev_close", "event_quarantined"]]
    validated = window.store.read_partitions(VALIDATED).set_index("date")
    assert set(window.sessions) <= set(validated.index)  # 07-13, 07-14 and 07-17 all kept
    event = events_on(window)
    assert event["flag"] == "dividend_ge_prev_close" and event["dividend_factor"] == 1.0
    assert adjusted_returns(window).min() < -0.9  # unadjusted: the crash is visible until corrected

    write_corrections(window, ['KSU,2000-07-13,split,0.5,"1-for-2 reverse split made with the Stilwell '
                               'spin-off, missing from the provider; 181/2 + 6.25/2 = 93.63 ~ previous close 93.75",'
                               'KCSI 2000 annual report'])
    report = build_events(window.store, pd.DatetimeIndex([window.ex_date]))  # re-materialise the ex-date
    assert report.corrections["applied"].tolist() == [True] and report.corrections_version
    event = events_on(window)
    assert pd.isna(event["flag"]) and event["correction"] == report.corrections_version
    assert event["dividend_factor"] == pytest.approx(1 - 181 * 0.5 / 93.75) and event["split_factor"] == 2.0
    adjusted = read_adjusted(window.store).set_index("date")
    assert adjusted.loc[prev["date"], "adj_close"] == pytest.approx(93.75 * (1 - 90.5 / 93.75) * 2)
    assert adjusted_returns(window).abs().max() < 0.2


def test_mo_philip_morris_spin_off_with_a_correction_from_the_ex_date_open(sp500_bars, tmp_path):
    """MO 2008-03-31 (Philip Morris International, one PM share per MO share): the provider's 50.48
    takes 68 % of the previous close and adjusts history as it is. A user who prefers the value the
    bars imply, previous close minus ex-date open (73.83 - 23.11 = 50.72, no overnight move of the
    remaining Altria), states it in the corrections file."""
    window = run_window(sp500_bars, tmp_path, "MO", "2008-03-31")
    ex, prev = window.ex, window.prev
    assert window.store.read_partitions(QUARANTINED).empty
    assert events_on(window)["dividend_factor"] == pytest.approx(1 - ex["dividend"] / prev["close"])

    implied = round(prev["close"] - ex["open"], 2)
    assert implied == 50.72
    write_corrections(window, [f"MO,2008-03-31,distribution,{implied},previous close 73.83 minus ex-date open "
                               "23.11 (one PM share per MO share),bars"])
    build_events(window.store, pd.DatetimeIndex([window.ex_date]))
    event = events_on(window)
    assert event["dividend"] == implied and event["dividend_factor"] == pytest.approx(ex["open"] / prev["close"])
    adjusted = read_adjusted(window.store).set_index("date")
    assert adjusted.loc[prev["date"], "adj_close"] == pytest.approx(ex["open"])
