"""SMA 20/50 crossover on real S&P 500 bars (2005-2015), checked against a plain Python event loop.

The event loop below shares no code with the engine: its own moving averages, its own cost
arithmetic and its own bookkeeping, one session at a time. Both sides see the same
backward-adjusted prices (``alphatwin_pipelines.adjustment.adjust`` on the raw bars, as of
the end of the window) and the same cost parameters.
"""

from __future__ import annotations

import math

import pytest

from alphatwin_pipelines.adjustment import adjust
from alphatwin_pipelines.backtest import CostModel, run_backtest, run_grid
from alphatwin_pipelines.strategies import MarketArrays, StrategySpec

SYMBOLS = ["AAPL", "MSFT", "JNJ", "XOM"]
START, END = "2005-01-01", "2015-12-31"
CASH = 100_000.0


@pytest.fixture(scope="module")
def adjusted(sp500_bars):
    raw = sp500_bars[sp500_bars["symbol"].isin(SYMBOLS) & sp500_bars["date"].between(START, END)]
    return adjust(raw.reset_index(drop=True))


@pytest.fixture(scope="module")
def market(adjusted):
    return MarketArrays.from_bars(adjusted, price="adj")


def _sma(values: list[float], window: int) -> list[float | None]:
    out: list[float | None] = []
    for t in range(len(values)):
        out.append(sum(values[t - window + 1: t + 1]) / window if t >= window - 1 else None)
    return out


def event_loop(rows, fast=20, slow=50, fees_bps=5.0, slippage_bps=5.0, impact_k_bps=100.0, adv_window=20,
               cash=CASH):
    """Long-only SMA crossover: enter when fast crosses above slow, leave when fast < slow;
    a decision at the close of t fills at the open of t + 1 with fees, slippage and impact."""
    opens = [r["adj_open"] for r in rows]
    closes = [r["adj_close"] for r in rows]
    dollar_volume = [r["adj_volume"] * r["adj_close"] for r in rows]
    f, s = _sma(closes, fast), _sma(closes, slow)
    fee = fees_bps / 1e4

    def slip(t):  # the ADV known at the close of t, for an order of the nominal value `cash`
        if t < adv_window - 1:
            participation = 1.0
        else:
            adv = sum(dollar_volume[t - adv_window + 1: t + 1]) / adv_window
            participation = min(cash / adv, 1.0) if adv > 0 else 1.0
        return (slippage_bps + impact_k_bps * math.sqrt(participation)) / 1e4

    money, shares, long, pending = cash, 0.0, False, None
    equity, n_trades = [], 0
    for t in range(len(rows)):
        if pending == "buy":
            price = opens[t] * (1 + slip(t - 1))
            shares = money / (1 + fee) / price
            money, n_trades = 0.0, n_trades + 1
        elif pending == "sell":
            money = shares * opens[t] * (1 - slip(t - 1)) * (1 - fee)
            shares = 0.0
        pending = None
        equity.append(money + shares * closes[t])
        if t >= 1 and f[t] is not None and f[t - 1] is not None and s[t - 1] is not None:
            diff, prev = f[t] - s[t], f[t - 1] - s[t - 1]
            if not long and diff > 0 and prev <= 0:
                long, pending = True, "buy"
            elif long and diff < 0:
                long, pending = False, "sell"
    returns = [equity[0] / cash - 1] + [equity[t] / equity[t - 1] - 1 for t in range(1, len(equity))]
    return equity, returns, n_trades


def by_hand_metrics(returns: list[float]) -> dict[str, float]:
    n = len(returns)
    mean = sum(returns) / n
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / (n - 1))
    growth, peak, mdd = 1.0, 1.0, 0.0
    for r in returns:
        growth *= 1 + r
        peak = max(peak, growth)
        mdd = max(mdd, 1 - growth / peak)
    return {"sharpe": mean / std * math.sqrt(252), "cagr": growth ** (252 / n) - 1, "max_drawdown": mdd,
            "total_return": growth - 1}


def _rows(adjusted, symbol):
    frame = adjusted[adjusted["symbol"] == symbol].sort_values("date")
    return frame[["adj_open", "adj_close", "adj_volume"]].to_dict("records")


@pytest.mark.parametrize("costs", [CostModel(), CostModel.zero()], ids=["default_costs", "zero_costs"])
def test_engine_matches_an_independent_event_loop(adjusted, market, costs):
    result = run_backtest(StrategySpec("ma_cross", {"fast": 20, "slow": 50}), market, costs=costs, init_cash=CASH)
    for symbol in SYMBOLS:
        equity, _, n_trades = event_loop(_rows(adjusted, symbol), fees_bps=costs.fees_bps,
                                         slippage_bps=costs.slippage_bps, impact_k_bps=costs.impact_k_bps)
        expected = equity[-1] / CASH - 1
        got = result.total_return[symbol]
        assert got == pytest.approx(expected, rel=1e-6), (symbol, got, expected)
        assert result.trade_summary.loc[symbol, "n_trades"] == n_trades > 10


def test_golden_metrics_sma_20_50_on_aapl(adjusted, market):
    _, returns, _ = event_loop(_rows(adjusted, "AAPL"))
    expected = by_hand_metrics(returns)
    result = run_backtest(StrategySpec("ma_cross", {"fast": 20, "slow": 50}), market.select(["AAPL"]))
    got = result.metrics.loc["AAPL"]
    print(f"\nAAPL SMA 20/50 2005-2015, default costs: {expected}")
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6), key
    assert got["n_obs"] == len(returns)


def test_grid_on_real_data_matches_single_runs(market):
    grid = run_grid("ma_cross", {"fast": [10, 20], "slow": [50, 100]}, market)
    alone = run_backtest(StrategySpec("ma_cross", {"fast": 20, "slow": 50}), market)
    pid = int(grid.specs.index[(grid.specs["fast"] == 20) & (grid.specs["slow"] == 50)][0])
    assert grid.total_return[pid].to_numpy() == pytest.approx(alone.total_return.to_numpy(), rel=1e-12)
