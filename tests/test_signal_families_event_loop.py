"""ADX trend and volume momentum against a plain Python event loop (no project code on that side).

The loop computes its own rules, state machine, next-open fills, fees, slippage and impact and its
own bookkeeping, one session at a time. ADX and +/-DI come from TA-Lib directly (the indicator
library, not the project's kernels); the volume and return averages are computed by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import talib

from alphatwin_pipelines.backtest import CostModel, run_backtest
from alphatwin_pipelines.strategies import MarketArrays, StrategySpec

CASH = 100_000.0


def trending_market(seed: int, T: int = 500, N: int = 3) -> MarketArrays:
    rng = np.random.default_rng(seed)
    drift = 0.002 * np.sin(np.arange(T)[:, None] / 40.0 + np.arange(N))  # trends that come and go
    close = 40.0 * np.exp(np.cumsum(drift + rng.normal(0, 0.012, size=(T, N)), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.004, size=(T, N)))
    volume = rng.lognormal(11, 0.6, size=(T, N)) * (1 + 2 * (rng.random((T, N)) < 0.05))  # some surges
    return MarketArrays(open_, np.fmax(open_, close) * 1.006, np.fmin(open_, close) * 0.994, close, volume,
                        pd.bdate_range("2018-01-01", periods=T), tuple(f"V{i}" for i in range(N)))


def event_loop(opens, closes, dollar_volume, entry_value, exit_flag, costs: CostModel):
    """Long-only: enter when ``entry_value`` turns > 0 (it was <= 0 on the previous bar), leave on
    ``exit_flag``; a signal at the close of t fills at the open of t + 1; entry and exit together cancel."""
    fee = costs.fees_bps / 1e4

    def slip(t):
        window = dollar_volume[t - costs.adv_window + 1: t + 1]
        adv = sum(window) / costs.adv_window if t >= costs.adv_window - 1 else float("nan")
        part = min(CASH / adv, 1.0) if adv == adv and adv > 0 else 1.0
        return (costs.slippage_bps + costs.impact_k_bps * math.sqrt(part)) / 1e4

    money, shares, long, pending = CASH, 0.0, False, None
    for t in range(len(closes)):
        if pending == "buy":
            shares = money / (1 + fee) / (opens[t] * (1 + slip(t - 1)))
            money = 0.0
        elif pending == "sell":
            money, shares = shares * opens[t] * (1 - slip(t - 1)) * (1 - fee), 0.0
        pending = None
        now, before = entry_value[t], entry_value[t - 1] if t else float("nan")
        enter = now == now and before == before and now > 0 and before <= 0
        leave = bool(exit_flag[t])
        if not long and enter and not leave:
            long, pending = True, "buy"
        elif long and leave and not enter:
            long, pending = False, "sell"
    return (money + shares * closes[-1]) / CASH - 1


def adx_inputs(m: MarketArrays, j: int, period: int, adx_min: float):
    h, lo, c = (np.ascontiguousarray(getattr(m, f)[:, j]) for f in ("high", "low", "close"))
    adx = talib.ADX(h, lo, c, timeperiod=period)
    plus, minus = talib.PLUS_DI(h, lo, c, timeperiod=period), talib.MINUS_DI(h, lo, c, timeperiod=period)
    strength = [min(p - q, a - adx_min) if all(x == x for x in (p, q, a)) else float("nan")
                for p, q, a in zip(plus, minus, adx)]
    return strength, [p < q for p, q in zip(plus, minus)]


def volume_inputs(m: MarketArrays, j: int, lookback: int, window: int, ratio: float):
    c, v = list(m.close[:, j]), list(m.volume[:, j])
    push, falling = [], []
    for t in range(len(c)):
        mom = c[t] / c[t - lookback] - 1 if t >= lookback else float("nan")
        rel = (sum(v[t - 4: t + 1]) / 5) / (sum(v[t - window + 1: t + 1]) / window) if t >= window - 1 else float("nan")
        push.append(min(mom, rel - ratio) if mom == mom and rel == rel else float("nan"))
        falling.append(mom == mom and mom < 0)
    return push, falling


@pytest.mark.parametrize("costs", [CostModel(), CostModel.zero()], ids=["default_costs", "zero_costs"])
@pytest.mark.parametrize("family,params", [
    ("adx_trend", {"period": 14, "adx_min": 20.0}),
    ("adx_trend", {"period": 9, "adx_min": 30.0}),
    ("volume_momentum", {"lookback": 10, "volume_window": 40, "volume_ratio": 1.2}),
])
def test_engine_matches_the_event_loop(family, params, costs):
    m = trending_market(3)
    result = run_backtest(StrategySpec(family, params, 0), m, costs=costs, init_cash=CASH)
    assert len(result.trades) > 5
    for j, symbol in enumerate(m.symbols):
        if family == "adx_trend":
            entry, leave = adx_inputs(m, j, params["period"], params["adx_min"])
        else:
            entry, leave = volume_inputs(m, j, params["lookback"], params["volume_window"], params["volume_ratio"])
        dollar_volume = list(m.volume[:, j] * m.close[:, j])
        expected = event_loop(list(m.open[:, j]), list(m.close[:, j]), dollar_volume, entry, leave, costs)
        assert abs(result.total_return[symbol] - expected) <= 1e-6, (symbol, result.total_return[symbol], expected)
