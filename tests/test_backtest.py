"""The backtest engine: fill convention, costs, grids and determinism on hand-computable cases."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines.backtest import (
    BacktestResult,
    CostModel,
    plan_orders,
    run_backtest,
    run_grid,
    run_random,
    run_specs,
)
from alphatwin_pipelines.strategies import MarketArrays, Signals, StrategySpec, generate
from alphatwin_pipelines.stats.metrics import compute_metrics

REPO_ROOT = Path(__file__).resolve().parents[1]
CASH = 100_000.0

OPEN = np.array([10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0])
CLOSE = OPEN + 0.5


def hand_market(open_=OPEN, close=CLOSE, volume=1e6) -> MarketArrays:
    open_, close = np.asarray(open_, float)[:, None], np.asarray(close, float)[:, None]
    return MarketArrays(open_, np.fmax(open_, close), np.fmin(open_, close), close,
                        np.where(np.isfinite(close), volume, np.nan), pd.bdate_range("2021-03-01", periods=len(close)),
                        ("XYZ",))


def one_trade(entry_row=1, exit_row=4, T=8, size=1.0) -> Signals:
    entries = np.zeros((T, 1), dtype=bool)
    exits = np.zeros((T, 1), dtype=bool)
    entries[entry_row], exits[exit_row] = True, True
    return Signals(entries, exits, size)


def random_market(seed: int, T: int = 500, N: int = 5) -> MarketArrays:
    rng = np.random.default_rng(seed)
    close = 40.0 * np.exp(np.cumsum(rng.standard_t(4, size=(T, N)) * 0.015 + 0.0004, axis=0))
    open_ = close * np.exp(rng.normal(0, 0.006, size=(T, N)))
    high = np.maximum(open_, close) * 1.004
    low = np.minimum(open_, close) * 0.996
    volume = rng.lognormal(12, 0.5, size=(T, N))
    for arr in (open_, high, low, close, volume):
        arr[:80, 1] = np.nan  # listed late
    return MarketArrays(open_, high, low, close, volume, pd.bdate_range("2016-01-01", periods=T),
                        tuple(f"Q{i}" for i in range(N)))


# ---------------------------------------------------------------- fill convention and P&L by hand


def test_signal_at_close_fills_at_next_open_exact_pnl():
    result = run_backtest(one_trade(), hand_market(), costs=CostModel.zero(), init_cash=CASH)
    assert isinstance(result, BacktestResult)
    shares = CASH / 12.0  # entry signal on row 1 -> bought at open[2] = 12
    expected_value = [CASH, CASH, shares * 12.5, shares * 13.5, shares * 14.5, shares * 15.0, shares * 15.0,
                      shares * 15.0]  # exit signal on row 4 -> sold at open[5] = 15
    np.testing.assert_allclose(result.value["XYZ"].to_numpy(), expected_value, rtol=1e-12)
    expected_returns = np.r_[0.0, np.array(expected_value[1:]) / np.array(expected_value[:-1]) - 1]
    np.testing.assert_allclose(result.returns["XYZ"].to_numpy(), expected_returns, rtol=1e-12, atol=1e-15)
    assert result.total_return["XYZ"] == pytest.approx(15.0 / 12.0 - 1.0, rel=1e-12)
    trade = result.trades.iloc[0]
    assert len(result.trades) == 1 and trade["status"] == "closed"
    assert trade["entry_date"] == result.returns.index[2] and trade["exit_date"] == result.returns.index[5]
    assert trade["entry_price"] == pytest.approx(12.0) and trade["exit_price"] == pytest.approx(15.0)
    assert trade["pnl"] == pytest.approx(shares * 3.0)
    np.testing.assert_allclose(result.positions["XYZ"].to_numpy(), [0, 0, shares, shares, shares, 0, 0, 0])
    np.testing.assert_array_equal(result.exposure["XYZ"].to_numpy() > 0, [0, 0, 1, 1, 1, 0, 0, 0])


def test_next_close_fill_option():
    result = run_backtest(one_trade(), hand_market(), costs=CostModel.zero(), fill="next_close")
    assert result.total_return["XYZ"] == pytest.approx(15.5 / 12.5 - 1.0, rel=1e-12)


def test_an_order_waits_for_the_next_bar_with_an_open():
    open_, close = OPEN.copy(), CLOSE.copy()
    open_[2] = close[2] = np.nan  # no bar on row 2: the entry signal of row 1 fills at open[3]
    result = run_backtest(one_trade(), hand_market(open_, close), costs=CostModel.zero())
    assert result.total_return["XYZ"] == pytest.approx(15.0 / 13.0 - 1.0, rel=1e-12)
    assert result.returns["XYZ"].iloc[2] == 0.0  # marked at the last close, no observation lost


def test_columns_with_and_without_missing_fill_bars_in_one_run():
    base = random_market(13, T=300, N=3)
    arrays = {f: getattr(base, f).copy() for f in ("open", "high", "low", "close", "volume")}
    sig = generate(StrategySpec("ma_cross", {"fast": 5, "slow": 50}), base)
    t = int(np.flatnonzero(sig.entries[:, 1])[0])
    for arr in arrays.values():  # column 1 has no bar when its first entry should fill, column 2 is delisted
        arr[t + 1, 1] = np.nan
        arr[250:, 2] = np.nan
    market = MarketArrays(**arrays, dates=base.dates, symbols=base.symbols)
    together = run_backtest(sig, market)
    for j, symbol in enumerate(market.symbols):
        one = Signals(sig.entries[:, [j]], sig.exits[:, [j]], sig.size[:, [j]])
        alone = run_backtest(one, market.select([symbol]))
        np.testing.assert_allclose(together.value[symbol].to_numpy(), alone.value[symbol].to_numpy(), rtol=1e-13)
    trade = together.trades[together.trades["symbol"] == "Q1"].iloc[0]
    assert trade["entry_idx"] == t + 2  # waited one bar for a price


def test_signal_on_the_last_row_never_fills():
    result = run_backtest(one_trade(entry_row=7, exit_row=0), hand_market(), costs=CostModel.zero())
    assert result.total_return["XYZ"] == 0.0 and len(result.trades) == 0


# ---------------------------------------------------------------- costs


def test_default_costs_are_on():
    c = CostModel()
    assert (c.fees_bps, c.slippage_bps, c.impact_k_bps, c.adv_window) == (5.0, 5.0, 100.0, 20)
    assert c.fees == pytest.approx(0.0005)
    # impact = k * sqrt(participation), capped at participation 1, worst case when ADV is unknown
    assert c.impact_bps(1e5, 1e9) == pytest.approx(100 * math.sqrt(1e-4))
    assert c.impact_bps(1e9, 1e5) == pytest.approx(100.0)
    assert c.impact_bps(1e5, np.nan) == pytest.approx(100.0)
    assert CostModel.zero().slippage_fraction(1e5, 1e6) == 0.0


def test_costs_on_a_one_trade_example_by_hand():
    market = hand_market()
    costs = CostModel(fees_bps=5, slippage_bps=5, impact_k_bps=100, adv_window=2)
    zero = run_backtest(one_trade(), market, costs=CostModel.zero(), init_cash=CASH)
    paid = run_backtest(one_trade(), market, costs=costs, init_cash=CASH)
    f = 5e-4
    # ADV at the signal close = mean(volume * close) of the last 2 bars (rows 0-1, then rows 3-4)
    s_buy = (5 + 100 * math.sqrt(CASH / (1e6 * (10.5 + 11.5) / 2))) * 1e-4
    s_sell = (5 + 100 * math.sqrt(CASH / (1e6 * (13.5 + 14.5) / 2))) * 1e-4
    shares = CASH / (1 + f) / (12.0 * (1 + s_buy))
    final = shares * 15.0 * (1 - s_sell) * (1 - f)
    assert paid.value["XYZ"].iloc[-1] == pytest.approx(final, rel=1e-12)
    assert paid.value["XYZ"].iloc[2] == pytest.approx(shares * 12.5, rel=1e-12)
    # The difference to the zero-cost run is exactly the round trip's cost factor.
    ratio = (1 + paid.total_return["XYZ"]) / (1 + zero.total_return["XYZ"])
    assert ratio == pytest.approx((1 - s_sell) * (1 - f) / ((1 + s_buy) * (1 + f)), rel=1e-12)
    orders = paid.orders
    assert orders["fees"].iloc[0] == pytest.approx(CASH - CASH / (1 + f), rel=1e-12)
    assert orders["price"].tolist() == pytest.approx([12.0 * (1 + s_buy), 15.0 * (1 - s_sell)], rel=1e-12)


def test_partial_size_commits_that_fraction_of_equity():
    result = run_backtest(one_trade(size=0.4), hand_market(), costs=CostModel.zero())
    shares = 0.4 * CASH / 12.0
    assert result.value["XYZ"].iloc[-1] == pytest.approx(0.6 * CASH + shares * 15.0, rel=1e-12)
    plan = plan_orders(one_trade(size=0.4), hand_market(), CostModel.zero(), CASH)
    assert plan.rows.tolist() == [2, 5] and plan.size.tolist() == [0.4, -1.0]
    assert plan.price.tolist() == [12.0, 15.0]


def test_stop_loss_exit_fills_at_the_next_open():
    close = np.r_[100.0 - 0.02 * np.arange(300), np.full(5, 150.0), 149.0, 140.0, 137.0, 150.0, 151.0]
    market = hand_market(close, close)
    spec = StrategySpec("ma_cross", {"fast": 20, "slow": 50, "stop_loss": 0.08, "trend_window": 2,
                                     "vol_pct": 1.0}, level=3)
    result = run_backtest(spec, market, costs=CostModel.zero())
    trade = result.trades.iloc[0]
    assert trade["entry_idx"] == 301 and trade["exit_idx"] == 308  # stop on the close of 307
    assert result.total_return["XYZ"] == pytest.approx(150.0 / 150.0 - 1.0, abs=1e-12)


# ---------------------------------------------------------------- grids, determinism, metrics


def test_grid_equals_individual_runs():
    market = random_market(5)
    grid = {"fast": [5, 12], "slow": [50, 90], "ma_type": ["sma", "ema"]}
    result = run_grid("ma_cross", grid, market, level=4, base_params={"trend_window": 100})
    assert result.returns.shape == (500, 8 * 5)
    assert list(result.returns.columns.names) == ["param_set", "symbol"]
    assert len(result.specs) == 8 and result.specs["spec_hash"].is_unique
    for pid, row in result.specs.iterrows():
        spec = StrategySpec.from_json(row["spec_json"])
        alone = run_backtest(spec, market)
        np.testing.assert_allclose(result.returns[pid].to_numpy(), alone.returns.to_numpy(), rtol=0, atol=1e-14)
        np.testing.assert_allclose(result.value[pid].to_numpy(), alone.value.to_numpy(), rtol=1e-14)
        assert (result.trade_summary.loc[pid, "n_trades"].to_numpy() == alone.trade_summary["n_trades"].to_numpy()).all()


def test_mixed_families_in_one_run():
    market = random_market(6)
    specs = [StrategySpec(f, {}, lvl) for f in ("rsi_reversion", "donchian_breakout", "bollinger_reversion")
             for lvl in (0, 5, 11)]
    result = run_specs(specs, market)
    for pid, spec in enumerate(specs):
        alone = run_backtest(spec, market)
        np.testing.assert_allclose(result.total_return[pid].to_numpy(), alone.total_return.to_numpy(), rtol=1e-13)
    assert (result.exposure.fillna(0) <= 1 + 1e-12).all().all()
    sized = result.exposure[5]  # level 5: vol-targeted sizing, so never fully invested at entry
    assert sized.max().max() < 1.0 or not (sized > 0).any().any()


def test_seeded_random_search_is_deterministic():
    market = random_market(7)
    a = run_random("rsi_reversion", 5, 6, market, seed=42)
    b = run_random("rsi_reversion", 5, 6, market, seed=42)
    c = run_random("rsi_reversion", 5, 6, market, seed=43)
    pd.testing.assert_frame_equal(a.specs, b.specs)
    pd.testing.assert_frame_equal(a.returns, b.returns)
    pd.testing.assert_frame_equal(a.metrics, b.metrics)
    assert not a.specs["spec_hash"].equals(c.specs["spec_hash"])


def test_metrics_come_from_compute_metrics():
    market = random_market(8)
    result = run_backtest(StrategySpec("ts_momentum", {"lookback": 40}), market)
    expected = compute_metrics(result.returns, positions=result.exposure)
    pd.testing.assert_frame_equal(result.metrics, expected)
    # a symbol listed late has no observations before its first bar
    assert result.metrics.loc["Q1", "n_obs"] == 500 - 80 and result.returns["Q1"].iloc[:80].isna().all()
    np.testing.assert_allclose(result.metrics["total_return"], result.total_return, rtol=1e-10)
    assert result.trade_summary["n_trades"].sum() == len(result.trades)


def test_event_axis_simulation_equals_the_full_calendar():
    market = random_market(10)
    specs = [StrategySpec("donchian_breakout", {}, lvl) for lvl in (0, 5, 9)]
    packed = run_specs(specs, market)
    full = run_specs(specs, market, compress=False)
    assert full.portfolio.wrapper.shape == (500, 15) and packed.portfolio.wrapper.shape[0] < 100
    pd.testing.assert_frame_equal(packed.returns, full.returns, rtol=1e-13)
    pd.testing.assert_frame_equal(packed.value, full.value, rtol=1e-13)
    cols = ["column_id", "entry_idx", "exit_idx", "size", "entry_price", "exit_price", "pnl", "return", "status"]
    pd.testing.assert_frame_equal(packed.trades[cols], full.trades[cols], rtol=1e-12)
    pd.testing.assert_frame_equal(packed.orders, full.orders, rtol=1e-13)


def test_accounts_match_vectorbt_assets_cash_value_and_returns():
    market = random_market(12)
    result = run_backtest(StrategySpec("rsi_reversion", {}, 5), market, compress=False)
    pf = result.portfolio
    np.testing.assert_allclose(result.positions.to_numpy(), pf.assets().to_numpy(), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(result.value.to_numpy(), pf.value().to_numpy(), rtol=1e-12)
    alive = result.returns.notna().to_numpy()
    np.testing.assert_allclose(result.returns.to_numpy()[alive], pf.returns().to_numpy()[alive], rtol=1e-9,
                               atol=1e-14)
    cash = result.value.to_numpy() - result.positions.to_numpy() * np.asarray(pf.close)
    np.testing.assert_allclose(cash, pf.cash().to_numpy(), rtol=1e-12, atol=1e-6)
    np.testing.assert_allclose(result.total_return.to_numpy(), pf.total_return().to_numpy(), rtol=1e-12)


def test_vectorbt_outputs_are_plain_pandas_on_pandas_3():
    result = run_backtest(StrategySpec("ma_cross"), random_market(9))
    for frame in (result.returns, result.value, result.exposure, result.positions):
        assert isinstance(frame.index, pd.DatetimeIndex) and list(frame.columns) == list(result.returns.columns)
        assert frame.dtypes.eq(np.float64).all()
    assert pd.api.types.is_datetime64_any_dtype(result.trades["entry_date"])


def test_configure_numba_cache_sets_the_cache_dir_and_backtests_fill_it(tmp_path):
    # Importing the package leaves the environment alone; the process's entry point calls
    # configure_numba_cache, and vectorbt's kernels are then cached under the data dir.
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["ALPHATWIN_DATA_DIR"] = str(tmp_path)
    code = textwrap.dedent("""
        import os, sys
        import alphatwin_pipelines.backtest as bt
        print(os.environ.get("NUMBA_CACHE_DIR"))
        print(bt.configure_numba_cache(), os.environ["NUMBA_CACHE_DIR"])
        print("numba" in sys.modules, "vectorbt" in sys.modules)
        bt.warm_up()
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    cache = str((tmp_path / ".numba_cache").resolve())
    assert lines[0] == "None"
    assert lines[1] == f"{cache} {cache}"
    assert lines[2] == "False False"
    assert list((tmp_path / ".numba_cache").rglob("*.nbi")), "the backtest compiled nothing into the cache"
