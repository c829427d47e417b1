"""The synthetic market against real US equities: returns, volatility and Sharpe ratios.

Both sides are measured the same way: daily total returns (dividends and splits included),
an equal-weight index of whatever is listed that day, Sharpe ratios against a zero rate. The
real set is the shared S&P 500 history (2000-2021, 2021 constituents, so survivors: its
returns are biased upwards). The figures are printed side by side (``pytest -s``); the
tolerances are loose on purpose: the point is the right order of magnitude, not a fit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.sources.synthetic import SyntheticSource
from alphatwin_pipelines.stats.metrics import sharpe_ratio, volatility

#: The window `make run` materialises (Makefile RUN_START..RUN_END): the demo's research period.
DEMO_WINDOW = ("2024-01-02", "2025-12-31")


def daily_returns(bars: pd.DataFrame) -> pd.DataFrame:
    """Date x symbol total returns: (close + dividend) * split ratio over the previous close."""
    bars = bars.sort_values(["symbol", "date"])
    previous = bars.groupby("symbol")["close"].shift()
    total = (bars["close"] + bars["dividend"]) * bars["split_ratio"] / previous - 1
    return bars.assign(r=total).pivot(index="date", columns="symbol", values="r").iloc[1:]


def market_statistics(returns: pd.DataFrame) -> dict[str, float]:
    index = returns.mean(axis=1)
    yearly = (1 + index).groupby(index.index.year).prod() - 1
    stocks = returns.loc[:, returns.count() > 3 * 252]  # enough history for a per-stock figure
    stock_sharpe, stock_vol = sharpe_ratio(stocks), volatility(stocks)
    return {
        "index annual return": index.mean() * 252,
        "index volatility": volatility(index),
        "index Sharpe": sharpe_ratio(index),
        "index yearly return, median": yearly.median(),
        "index yearly return, std": yearly.std(),
        "stock volatility, median": stock_vol.median(),
        "stock Sharpe, median": stock_sharpe.median(),
        "stock Sharpe, 25-75 %": (stock_sharpe.quantile(0.25), stock_sharpe.quantile(0.75)),
    }


def _show(value) -> str:
    return f"{value[0]:.2f} .. {value[1]:.2f}" if isinstance(value, tuple) else f"{value:.3f}"


@pytest.fixture(scope="module")
def synthetic_returns() -> pd.DataFrame:
    source = SyntheticSource(n_symbols=300, defects=0)
    bars = source.fetch(source.universe()["symbol"].tolist(), sessions_between("2000-01-03", "2025-12-31")).bars
    return daily_returns(bars)


def test_synthetic_market_has_the_statistics_of_real_us_equities(sp500_bars, synthetic_returns):
    real = market_statistics(daily_returns(sp500_bars[sp500_bars["date"] >= "2000-01-01"]))
    ours = market_statistics(synthetic_returns)
    demo = synthetic_returns.loc[DEMO_WINDOW[0]:DEMO_WINDOW[1]].mean(axis=1)
    print(f"\n{'':<30}{'S&P 500 2000-2021':>20}{'synthetic 2000-2025':>22}")
    for name in real:
        print(f"{name:<30}{_show(real[name]):>20}{_show(ours[name]):>22}")
    print(f"{'index Sharpe, demo window':<30}{'':>20}{sharpe_ratio(demo):>22.3f}")

    assert 0.25 <= ours["stock volatility, median"] <= 0.35
    assert 0.7 <= ours["stock volatility, median"] / real["stock volatility, median"] <= 1.2
    assert 0.3 <= ours["stock Sharpe, median"] <= 0.5
    assert ours["stock Sharpe, median"] <= real["stock Sharpe, median"] + 0.1  # survivors beat a whole market
    assert 0.4 <= ours["index Sharpe"] <= 0.65
    assert 0.6 <= ours["index volatility"] / real["index volatility"] <= 1.3
    assert 0.6 <= ours["index yearly return, std"] / real["index yearly return, std"] <= 1.4
    assert 0.04 <= ours["index annual return"] <= 0.14
    # The demo's two years are an ordinary stretch, not a boom that makes every strategy shine.
    assert -0.5 <= sharpe_ratio(demo) <= 1.2


def test_returns_are_heavy_tailed_and_correlated_like_real_stocks(sp500_bars, synthetic_returns):
    real = daily_returns(sp500_bars[sp500_bars["date"].between("2010-01-01", "2019-12-31")])
    ours = synthetic_returns.loc["2010":"2019"]
    for returns in (real, ours):
        returns.dropna(axis=1, inplace=True)
    real_corr = np.nanmean(np.corrcoef(real.to_numpy()[:, :200], rowvar=False))
    our_corr = np.nanmean(np.corrcoef(ours.to_numpy()[:, :200], rowvar=False))
    print(f"\nmean pairwise correlation 2010-2019: S&P 500 {real_corr:.3f}, synthetic {our_corr:.3f}; "
          f"median excess kurtosis: {real.kurt().median():.1f} vs {ours.kurt().median():.1f}")
    assert 0.5 <= our_corr / real_corr <= 1.5
    assert ours.kurt().median() > 1.5
