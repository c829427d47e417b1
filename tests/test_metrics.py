"""Golden performance metrics on a hand-made series, edge cases, and AAPL's 2000-2003 drawdown."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from alphatwin_pipelines.stats import metrics as m

# Equity, starting at 1.0 before the first return:
#   1.10, 0.88, 0.924, 1.0164, 1.0164, 0.91476, 1.14345
# Peak 1.10 after row 1; trough 0.88 after row 2 (drawdown 0.2); the 1.10 peak is first
# exceeded after row 7, so the worst drawdown lasted 7 - 1 = 6 sessions.
GOLDEN = [0.10, -0.20, 0.05, 0.10, 0.00, -0.10, 0.25]
POSITIONS = [1, 1, 0, 1, -1, -1, 0]  # entries at rows 1 and 4, a flip at row 5: 3 trades


def golden_series() -> pd.Series:
    return pd.Series(GOLDEN, index=pd.bdate_range("2021-01-04", periods=7), name="golden")


def test_golden_metrics_by_hand():
    out = m.compute_metrics(golden_series(), positions=POSITIONS)
    growth = 1.10 * 0.80 * 1.05 * 1.10 * 1.00 * 0.90 * 1.25
    assert growth == pytest.approx(1.14345)
    assert out["total_return"] == pytest.approx(0.14345)
    assert out["max_drawdown"] == pytest.approx(0.20)
    assert out["max_drawdown_duration"] == 6
    assert out["max_drawdown_recovered"] == 1.0
    assert out["win_rate"] == pytest.approx(4 / 6)  # 4 up, 2 down; the flat day is not a trade
    assert out["profit_factor"] == pytest.approx(0.50 / 0.30)
    assert out["n_obs"] == 7
    # Sharpe: mean = 0.2/7; sum of squares = 0.135, so the ddof=1 variance is (0.135 - 7 mean^2)/6.
    mean = 0.2 / 7
    var = (0.135 - 7 * mean**2) / 6
    assert out["sharpe"] == pytest.approx(mean / math.sqrt(var) * math.sqrt(252))
    assert out["sharpe"] == pytest.approx(3.08985, abs=1e-4)
    # Sortino: downside deviation sqrt((0.2^2 + 0.1^2) / 7).
    assert out["sortino"] == pytest.approx(mean / math.sqrt(0.05 / 7) * math.sqrt(252))
    assert out["volatility"] == pytest.approx(math.sqrt(var * 252))
    assert out["exposure"] == pytest.approx(5 / 7)
    assert out["n_trades"] == 3
    assert out["avg_holding_period"] == pytest.approx(5 / 3)
    assert out["skewness"] == pytest.approx(stats.skew(GOLDEN, bias=True))
    assert out["kurtosis"] == pytest.approx(stats.kurtosis(GOLDEN, fisher=False, bias=True))


def test_cagr_by_hand():
    r = golden_series()
    # 7 sessions as one year: CAGR is the total return; as two years, its square root.
    assert m.cagr(r, periods_per_year=7) == pytest.approx(0.14345)
    assert m.cagr(r, periods_per_year=3.5) == pytest.approx(math.sqrt(1.14345) - 1)
    assert m.cagr([0.01] * 252) == pytest.approx(1.01**252 - 1)
    assert m.cagr([0.5, -1.0, 0.2]) == -1.0  # wiped out


def test_drawdown_unrecovered_runs_to_the_end():
    # equity 1.05, 0.945, 0.99225: the 1.05 peak (row 1) is never regained; last row is 3.
    out = m.compute_metrics([0.05, -0.10, 0.05])
    assert out["max_drawdown"] == pytest.approx(0.10)
    assert out["max_drawdown_duration"] == 2
    assert out["max_drawdown_recovered"] == 0.0
    # A first-day loss is a drawdown from the starting capital.
    assert m.max_drawdown([-0.3, 0.1]) == pytest.approx(0.3)
    assert m.max_drawdown_duration([-0.3, 0.1]) == 2
    np.testing.assert_allclose(m.drawdown(golden_series()).to_numpy(),
                               [0, 0.2, 0.16, 0.076, 0.076, 1 - 0.91476 / 1.1, 0], atol=1e-12)


def test_trade_returns_give_per_trade_win_rate():
    out = m.compute_metrics(golden_series(), trade_returns=[0.05, -0.02, 0.03, 0.01])
    assert out["win_rate"] == 0.75
    assert out["profit_factor"] == pytest.approx(0.09 / 0.02)
    assert out["n_trades"] == 4
    with pytest.raises(ValueError):
        m.compute_metrics(np.zeros((5, 2)), trade_returns=[0.1])


def test_vectorised_over_columns_matches_one_by_one():
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(rng.normal(0.0005, 0.01, (300, 4)), columns=list("abcd"))
    frame["golden"] = np.r_[GOLDEN, np.zeros(293)]
    table = m.compute_metrics(frame)
    assert list(table.index) == list(frame.columns)
    for col in frame.columns:
        one = m.compute_metrics(frame[col])
        for key, value in one.items():
            assert table.loc[col, key] == pytest.approx(value, nan_ok=True), (col, key)
    as_array = m.sharpe_ratio(frame.to_numpy())
    assert isinstance(as_array, np.ndarray) and as_array.shape == (5,)
    assert isinstance(m.sharpe_ratio(frame), pd.Series)
    assert isinstance(m.sharpe_ratio(frame["a"]), float)


@pytest.mark.parametrize(
    "returns",
    [np.zeros(50), [0.01], [], [np.nan, np.nan], np.full(40, 0.002), [np.nan] * 5 + [0.01]],
    ids=["all-zero", "one-obs", "empty", "all-nan", "constant", "nan-then-one"],
)
def test_degenerate_inputs_give_nan_without_warnings(returns):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = m.compute_metrics(returns, positions=np.zeros(len(returns)))
        lines = m.explain(out)
    for key in ("sharpe", "sortino", "volatility", "skewness", "kurtosis"):
        assert math.isnan(out[key]), key
    assert set(lines) == set(out)
    assert "not available" in lines["sharpe"]


def test_all_zero_returns():
    out = m.compute_metrics(np.zeros(50))
    assert out["total_return"] == 0 and out["max_drawdown"] == 0
    assert out["max_drawdown_duration"] == 0
    assert math.isnan(out["win_rate"]) and math.isnan(out["profit_factor"])


def test_leading_nans_are_ignored():
    padded = pd.Series([np.nan] * 3 + GOLDEN)
    a, b = m.compute_metrics(padded), m.compute_metrics(GOLDEN)
    for key in a:
        assert a[key] == pytest.approx(b[key], nan_ok=True), key


def test_inputs_are_not_mutated():
    series = golden_series()
    frame = pd.DataFrame({"x": GOLDEN, "y": [np.nan] + GOLDEN[1:]})
    arr = np.array(GOLDEN)
    before = series.copy(), frame.copy(), arr.copy()
    m.compute_metrics(series, positions=POSITIONS)
    m.compute_metrics(frame, positions=frame.notna().astype(float))
    m.compute_metrics(arr)
    m.drawdown(frame)
    pd.testing.assert_series_equal(series, before[0])
    pd.testing.assert_frame_equal(frame, before[1])
    np.testing.assert_array_equal(arr, before[2])


def test_explain_lines_follow_the_values():
    lines = m.explain({"max_drawdown": 0.15, "sharpe": 0.8, "profit_factor": float("inf"),
                       "unknown_metric": 1.0})
    assert lines["max_drawdown"].startswith("Max drawdown 15%: you could lose this much")
    assert lines["sharpe"].startswith("Sharpe 0.80: about 0.80 units of return per unit")
    assert "below 1 is modest" in lines["sharpe"]
    assert "above 2" in m.explain({"sharpe": 2.5})["sharpe"]
    assert "infinite" in lines["profit_factor"]
    assert "unknown_metric" not in lines
    full = m.explain(m.compute_metrics(golden_series(), positions=POSITIONS))
    assert all(isinstance(v, str) and v for v in full.values()) and len(full) == 16


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-0.5, 0.5, allow_nan=False), min_size=0, max_size=60))
def test_metric_invariants(values):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = m.compute_metrics(values)
    if not values:
        return
    assert 0 <= out["max_drawdown"] < 1
    assert 0 <= out["max_drawdown_duration"] <= len(values)
    if not math.isnan(out["win_rate"]):
        assert 0 <= out["win_rate"] <= 1


def _split_adjusted_close(bars: pd.DataFrame) -> pd.Series:
    """Close divided by the product of every split dated after it (the split is on its ex-date)."""
    bars = bars.sort_values("date")
    ratio = bars["split_ratio"].fillna(1.0).to_numpy()
    from_here_on = np.cumprod(ratio[::-1])[::-1]  # product over this row and every later row
    after = from_here_on / ratio
    return pd.Series(bars["close"].to_numpy() / after, index=pd.DatetimeIndex(bars["date"]))


def test_aapl_dotcom_drawdown_on_split_adjusted_closes(sp500_bars):
    aapl = sp500_bars[sp500_bars["symbol"] == "AAPL"]
    close = _split_adjusted_close(aapl).loc["2000-01-01":"2003-12-31"]
    returns = close.pct_change().dropna()
    # The 2:1 split on 2000-06-21 is not a 45% loss once closes are adjusted.
    assert returns.loc["2000-06-21"] > -0.2
    raw = aapl.set_index("date")["close"].loc["2000-06-20":"2000-06-21"]
    assert raw.iloc[1] / raw.iloc[0] - 1 < -0.4
    out = m.compute_metrics(returns)
    assert out["max_drawdown"] > 0.70
    assert out["max_drawdown_recovered"] == 0.0  # still under water at the end of 2003
    assert out["sharpe"] < 0.5


def test_pandas_positions_are_aligned_on_dates():
    r = golden_series()
    shuffled = pd.Series(POSITIONS, index=r.index).iloc[::-1]
    assert m.compute_metrics(r, positions=shuffled)["n_trades"] == 3
    frame = pd.DataFrame({"x": GOLDEN, "y": GOLDEN})
    pos = pd.DataFrame({"y": [0.0] * 7, "x": POSITIONS})
    table = m.compute_metrics(frame, positions=pos)
    assert table.loc["x", "n_trades"] == 3 and table.loc["y", "n_trades"] == 0
