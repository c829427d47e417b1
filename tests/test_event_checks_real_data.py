"""Provider events the real S&P 500 prices do not show (``event.not_in_prices``).

A real split or spin-off explains the raw move, so the adjusted move is ordinary; a wrong event
makes the adjusted move the absurd one. The cases below are provider errors on the shared set.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines.quality import validate
from alphatwin_pipelines.schema import to_canonical
from test_corporate_actions_real_data import SPIN_OFFS

RULE = "event.not_in_prices"
NOT_IN_PRICES = {
    "SO": "2001-04-03",  # a spurious split 1.5 next to the 13.8 Mirant distribution
    "TMUS": "2013-05-01",  # 8.1 with the 1-for-2 reverse split of the MetroPCS merger missing
    "GNRC": "2010-02-12",  # a 0.3036 split on its second session while the prices are continuous
}
AS_OF = "2021-12-31"


def _window(sp500_bars, symbol: str, ex_date: str) -> tuple[pd.DataFrame, int]:
    rows = sp500_bars[sp500_bars["symbol"] == symbol].sort_values("date").reset_index(drop=True)
    at = int(np.flatnonzero(rows["date"].to_numpy() == np.datetime64(ex_date))[0])
    start = max(at - 80, 0)
    return to_canonical(rows.iloc[start: at + 6]).reset_index(drop=True), at - start


@pytest.mark.parametrize("symbol, ex_date", list(NOT_IN_PRICES.items()))
def test_an_event_the_prices_do_not_show_is_flagged_with_implied_and_observed_moves(sp500_bars, symbol, ex_date):
    raw, row = _window(sp500_bars, symbol, ex_date)
    result = validate(raw, as_of=AS_OF)
    found = result.failures[(result.failures["raw_row"] == row) & (result.failures["rule_id"] == RULE)]
    assert found["action"].tolist() == ["flagged"]
    kept = result.validated.set_index("raw_row").loc[row]  # the bar and its event stay
    assert RULE in kept["flags"].split(",") and kept["split_ratio"] == raw.loc[row, "split_ratio"]
    # By hand from the bars: the adjusted previous close is (close[t-1] - D * r) / r.
    prev, ex = raw.loc[row - 1], raw.loc[row]
    implied = ex["close"] * ex["split_ratio"] / (prev["close"] - ex["dividend"] * ex["split_ratio"]) - 1
    text = found["offending_value"].iloc[0]
    assert f"adjusted move of {implied:+.0%}" in text and f"close moved {ex['close'] / prev['close'] - 1:+.0%}" in text
    assert abs(implied) > 0.5 and "return.outlier" not in kept["flags"]  # named once, by the event rule


def test_on_the_whole_history_it_flags_few_bars_and_no_real_split_or_spin_off(sp500_bars):
    result = validate(to_canonical(sp500_bars), as_of=AS_OF)
    flagged = result.failures[result.failures["rule_id"] == RULE]
    keys = set(zip(flagged["symbol"].astype(str), flagged["date"].astype(str)))
    print(f"\n{RULE}: {len(flagged)} bar(s) of {len(sp500_bars):,}\n"
          + flagged[["symbol", "date", "offending_value"]].to_string(index=False))
    assert set(NOT_IN_PRICES.items()) <= keys
    assert not set(SPIN_OFFS.items()) & keys
    assert len(flagged) < 20  # a handful of provider errors among 475 splits and 27,729 dividends

    # Every split (without a distribution beside it) whose raw move shows it, the adjusted move
    # within 25 %, is left alone.
    bars = to_canonical(sp500_bars).sort_values(["symbol", "date"]).reset_index(drop=True)
    prev_close = bars.groupby("symbol")["close"].shift()
    split = (bars["split_ratio"] != 1) & (bars["dividend"] == 0)
    shown = split & (np.abs(np.log(bars["close"] * bars["split_ratio"] / prev_close)) < np.log(1.25))
    assert shown.sum() > 400
    split_keys = set(zip(bars.loc[shown, "symbol"].astype(str), bars.loc[shown, "date"].dt.strftime("%Y-%m-%d")))
    assert not split_keys & keys
