"""Adjustment on the real S&P 500 set (1999-2021): AAPL's and MSFT's splits and dividends."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines.adjustment import adjust, corporate_actions

AAPL_SPLITS = {"2000-06-21": 2.0, "2005-02-28": 2.0, "2014-06-09": 7.0, "2020-08-31": 4.0}
MSFT_SPLITS = {"2003-02-18": 2.0}


@pytest.fixture(scope="module")
def adjusted(sp500_bars):
    t0 = time.perf_counter()
    out = adjust(sp500_bars)
    elapsed = time.perf_counter() - t0
    print(f"\nadjust() on {len(sp500_bars):,} rows: {elapsed:.2f} s")
    return out, elapsed


def _symbol(frame: pd.DataFrame, symbol: str) -> pd.DataFrame:
    return frame[frame["symbol"] == symbol].sort_values("date").reset_index(drop=True)


def _by_hand(raw: pd.DataFrame, on: str) -> float:
    """Raw close x the product, over every later event row in the data, of its factors.

    Written as a plain loop over the symbol's rows so it shares no code with the engine: the
    dividend factor is 1 - D / (previous raw close restated per new share), the split factor 1/r.
    """
    day = pd.Timestamp(on)
    expected = float(raw.loc[raw["date"] == day, "close"].iloc[0])
    for i in range(1, len(raw)):
        row, prev = raw.iloc[i], raw.iloc[i - 1]
        if row["date"] <= day or (row["dividend"] == 0 and row["split_ratio"] == 1):
            continue
        r = row["split_ratio"]
        expected *= (1 - row["dividend"] * r / prev["close"]) / r
    return expected


def test_full_set_is_adjusted_without_touching_its_input(sp500_bars, adjusted):
    out, _ = adjusted  # the time is printed; speed is benchmarks/bench_quality_cleaning.py's business
    assert len(out) == len(sp500_bars) > 2_000_000
    assert "adj_close" not in sp500_bars.columns  # the shared fixture is not mutated


@pytest.mark.parametrize(
    "symbol, dates",
    [
        ("AAPL", ["1999-12-31", "2000-06-20", "2005-02-25", "2012-08-08", "2014-06-06", "2020-08-28", "2021-02-04"]),
        ("MSFT", ["1999-12-31", "2003-02-14", "2003-02-18", "2004-11-12", "2020-11-17"]),
    ],
)
def test_adjusted_closes_match_a_hand_computation(sp500_bars, adjusted, symbol, dates):
    raw, out = _symbol(sp500_bars, symbol), _symbol(adjusted[0], symbol)
    for day in dates:
        got = float(out.loc[out["date"] == pd.Timestamp(day), "adj_close"].iloc[0])
        assert got == pytest.approx(_by_hand(raw, day), rel=1e-12), (symbol, day)
    last = out.iloc[-1]
    assert last["adj_close"] == last["close"]


def test_known_factors_written_out():
    """A few factors spelled out from the printed data, independent of any loop."""
    # MSFT: 2:1 split on 2003-02-18 (raw close 24.96), 0.08 dividend the next day. The
    # dividend's previous close is that raw, already post-split 24.96.
    msft = pd.DataFrame(
        {
            "symbol": "MSFT",
            "date": pd.to_datetime(["2003-02-14", "2003-02-18", "2003-02-19", "2003-02-20"]),
            "open": [47.0, 24.62, 24.82, 24.5],
            "high": [48.0, 24.99, 24.88, 24.6],
            "low": [46.0, 24.40, 24.17, 24.1],
            "close": [47.75, 24.96, 24.53, 24.2],
            "volume": [1, 1, 1, 1],
            "dividend": [0.0, 0.0, 0.08, 0.0],
            "split_ratio": [1.0, 2.0, 1.0, 1.0],
            "source": "t",
        }
    )
    ev = corporate_actions(msft)
    assert ev["dividend_factor"].tolist()[1] == pytest.approx(1 - 0.08 / 24.96, rel=1e-15)
    out = adjust(msft)["adj_close"].tolist()
    assert out[0] == pytest.approx(47.75 / 2 * (1 - 0.08 / 24.96), rel=1e-15)
    assert out[1] == pytest.approx(24.96 * (1 - 0.08 / 24.96), rel=1e-15)


def test_real_events_match_the_data(sp500_bars):
    aapl = corporate_actions(_symbol(sp500_bars, "AAPL"))
    splits = aapl[aapl["split_ratio"] != 1]
    assert [f"{d:%Y-%m-%d}" for d in splits["date"]] == list(AAPL_SPLITS)
    np.testing.assert_allclose(splits["split_ratio"], list(AAPL_SPLITS.values()), rtol=1e-5)
    assert (aapl["dividend"] > 0).sum() == 35 and aapl["flag"].isna().all()


@pytest.mark.parametrize("symbol, splits", [("AAPL", AAPL_SPLITS), ("MSFT", MSFT_SPLITS)])
def test_no_jump_on_split_dates(sp500_bars, adjusted, symbol, splits):
    raw, out = _symbol(sp500_bars, symbol), _symbol(adjusted[0], symbol)
    raw_ret = raw["close"].pct_change()
    adj_ret = out["adj_close"].pct_change()
    for day, ratio in splits.items():
        i = int(np.flatnonzero(out["date"] == pd.Timestamp(day))[0])
        assert raw_ret.iloc[i] < -0.4  # about -50%, -86%, -75% as traded
        assert raw_ret.iloc[i] == pytest.approx(1 / ratio - 1, abs=0.08)
        assert abs(adj_ret.iloc[i]) < 0.20, (symbol, day, adj_ret.iloc[i])
