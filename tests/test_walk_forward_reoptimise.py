"""Walk-forward re-optimisation: no look-ahead in the choices, purge/embargo geometry, the benchmark
gate, and the DSR's trial count over a whole family.

Markets are small seeded random walks (4 symbols, ~260 sessions) and windows run 2-3 trials, so the
optimiser runs for real (Optuna TPE + the vectorbt backtest) in a few seconds.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphatwin_pipelines.backtest import CostModel
from alphatwin_pipelines.reports import GateThresholds, ValidationSettings, gate_failures
from alphatwin_pipelines.reports import reoptimise
from alphatwin_pipelines.reports.evaluate import deflated_sharpe
from alphatwin_pipelines.reports.reoptimise import parameter_stability, reoptimise_walk_forward, window_seed
from alphatwin_pipelines.stats import compute_metrics, information_ratio
from alphatwin_pipelines.strategies import MarketArrays, StrategySpec, holding_horizon, longest_lookback

SPEC = StrategySpec("ma_cross", {"fast": 10, "slow": 50}, 0)  # lookback 51, horizon 51: purge 102


def random_walk(n_sessions: int = 260, n_symbols: int = 4, seed: int = 0) -> MarketArrays:
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0004, 0.018, (n_sessions, n_symbols)), axis=0))
    open_ = close * np.exp(rng.normal(0.0, 0.004, close.shape))
    return MarketArrays(open=open_, high=np.maximum(open_, close) * 1.004, low=np.minimum(open_, close) * 0.996,
                        close=close, volume=np.full(close.shape, 1e6),
                        dates=pd.bdate_range("2018-01-02", periods=n_sessions),
                        symbols=tuple(f"S{i}" for i in range(n_symbols)))


def perturbed_after(market: MarketArrays, cutoff: pd.Timestamp, seed: int) -> MarketArrays:
    """The same market with every price after ``cutoff`` scaled by seeded noise."""
    later = np.asarray(market.dates > cutoff)
    noise = np.random.default_rng(seed).uniform(0.6, 1.4, (int(later.sum()), market.shape[1]))
    fields = {}
    for name in ("open", "high", "low", "close"):
        arr = np.array(getattr(market, name))
        arr[later] *= noise
        fields[name] = arr
    return MarketArrays(**fields, volume=market.volume, dates=market.dates, symbols=market.symbols)


def run(market, storage_dir, mode="rolling", trials=3, seed=0, embargo=2):
    return reoptimise_walk_forward(SPEC, market, train=60, test=30, n_trials=trials, seed=seed, costs=CostModel(),
                                   embargo=embargo, mode=mode, storage_url=f"sqlite:///{storage_dir}/optuna.db")


MARKET = random_walk()


@settings(max_examples=4, deadline=None)
@given(window=st.integers(0, 3), offset=st.integers(0, 29), noise_seed=st.integers(0, 2**16))
def test_window_choices_ignore_data_after_their_training_slice(window, offset, noise_seed):
    # Fresh storages for both runs: a stored study must not be what makes the choices agree.
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        base = run(MARKET, a)
        w = base.splits[window]
        cutoff = MARKET.dates[w.train_positions.stop - 1 + offset]  # train end, or up to 29 sessions later
        other = run(perturbed_after(MARKET, cutoff, noise_seed), b)
    assert len(base.splits) == len(other.splits) >= 4
    blind = [s.index for s in base.splits if s.train_end <= cutoff]
    assert window in blind
    for k in blind:  # every window trained before the change chose the same parameters
        assert base.windows.loc[k, "params"] == other.windows.loc[k, "params"]
        assert base.windows.loc[k, "train_sharpe"] == other.windows.loc[k, "train_sharpe"]
    # ... and its test returns up to the change are the same (signals and fills are causal).
    pd.testing.assert_series_equal(base.oos_returns.loc[:cutoff], other.oos_returns.loc[:cutoff])


def test_the_optimiser_sees_nothing_after_the_train_end(monkeypatch, tmp_path):
    seen = []
    real = reoptimise.optimise_window

    def spy(market, family, level, start, n_trials, seed, costs, storage_url=None, pairs=(), indicators=None):
        assert indicators is not None and indicators.market is market  # the shared cache, cut to this window
        seen.append((market.dates[0], market.dates[-1], pd.Timestamp(start), n_trials, seed))
        return real(market, family, level, start, n_trials, seed, costs, storage_url, pairs=pairs,
                    indicators=indicators)

    monkeypatch.setattr(reoptimise, "optimise_window", spy)
    wf = run(MARKET, tmp_path, trials=2, seed=11)
    assert len(seen) == len(wf.splits)
    assert [s[1] for s in seen] == sorted((s[1] for s in seen), reverse=True)  # latest window first
    for (first, last, start, n, seed), w in zip(seen[::-1], wf.splits):
        assert last == w.train_end and first == MARKET.dates[0] and start == w.train_start
        assert n == 2 and seed == window_seed(11, w.index)
    assert len({s[4] for s in seen}) == len(seen)  # one seed per window
    assert (wf.windows["trials"] == 2).all() and wf.n_trials == 2 * len(wf.splits) == len(wf.trial_sharpes)


@pytest.mark.parametrize("mode", ["rolling", "anchored"])
def test_purge_and_embargo_geometry(mode, tmp_path):
    wf = run(MARKET, tmp_path, mode=mode, trials=2, embargo=4)
    assert (wf.lookback, wf.horizon) == (longest_lookback(SPEC), holding_horizon(SPEC)) == (51, 51)
    dates = MARKET.dates
    for w in wf.splits:
        assert (w.purge, w.embargo) == (102, 4)
        assert dates.get_loc(w.test_start) - dates.get_loc(w.train_end) == 102 + 4 + 1
        assert w.train_start == dates[0] if mode == "anchored" else w.n_train == 60
    assert wf.splits[0].test_start == dates[60 + 102 + 4]
    # The test windows tile the rest of the history; the stitched stream covers it once, in order.
    assert wf.oos_returns.index.equals(dates[60 + 102 + 4:])
    for w in wf.splits:  # each window trades from flat: nothing decided before its test start
        assert wf.book.exposure[w.index].iloc[: w.test_positions.start + 1].eq(0).all()


def test_holding_horizon_and_a_history_too_short(tmp_path):
    stopped = StrategySpec("rsi_reversion", {"max_hold": 17}, 9)
    assert holding_horizon(stopped) == 17
    assert holding_horizon(StrategySpec("donchian_breakout", {"entry_window": 40, "exit_window": 30}, 0)) == 41
    short = random_walk(n_sessions=150)
    wf = run(short, tmp_path)
    assert wf.windows.empty and wf.n_trials == 0 and wf.oos_returns.empty
    assert (wf.needed, wf.available) == (60 + 102 + 2 + 1, 150)


def test_parameter_stability_scores():
    same = [StrategySpec("ma_cross", {"fast": 10, "slow": 80, "ma_type": "ema"}, 0)] * 3
    table, score = parameter_stability(same)
    assert score == 1.0 and table.set_index("parameter")["modal_share"].eq(1.0).all()
    spread = [StrategySpec("ma_cross", {"fast": f, "slow": s, "ma_type": t}, 0)
              for f, s, t in [(5, 50, "sma"), (45, 250, "ema"), (5, 250, "sma"), (45, 50, "ema")]]
    table, score = parameter_stability(spread)
    rows = table.set_index("parameter")
    assert rows.loc["ma_type", "stability"] == 0.0  # 2 choices, each half of the windows: as random draws
    assert rows.loc["fast", "stability"] == 0.0 and score == 0.0  # std of the range ends > a uniform draw's
    assert math.isnan(parameter_stability(same[:1])[1])


# -- the benchmark gate ----------------------------------------------------------------------------

def _series(total: float, sharpe: float, n: int = 252, seed: int = 0) -> pd.Series:
    """Daily returns with exactly this annualised Sharpe whose compounded total is ``total``."""
    z = np.random.default_rng(seed).standard_normal(n)
    z = (z - z.mean()) / z.std(ddof=1)
    lo, hi = 0.0, 0.05
    for _ in range(100):  # bisect the daily mean (the Sharpe fixes the volatility to mean / SR)
        mu = (lo + hi) / 2
        r = mu + mu / (sharpe / math.sqrt(252)) * z
        lo, hi = (mu, hi) if np.prod(1 + r) - 1 < total else (lo, mu)
    return pd.Series(r, index=pd.bdate_range("2021-01-04", periods=n))


def test_a_strategy_behind_buy_and_hold_cannot_pass():
    # The case: 22 % while buy-and-hold of its symbols made 93 %, Sharpe 3.2 against 3.0 and 3.6.
    strategy, hold, sma = _series(0.22, 3.2, seed=1), _series(0.93, 3.0, seed=2), _series(0.40, 3.6, seed=3)
    m = compute_metrics(strategy)
    assert m["total_return"] == pytest.approx(0.22, abs=1e-6) and m["sharpe"] == pytest.approx(3.2, rel=1e-6)
    assert compute_metrics(hold)["total_return"] == pytest.approx(0.93, abs=1e-6)
    ratios = {"buy_and_hold": information_ratio(strategy, hold), "sma_50_200": information_ratio(strategy, sma)}
    assert ratios["buy_and_hold"] < 0
    failures = gate_failures(0.99, 0.1, m["sharpe"], 500, GateThresholds(), ratios)
    assert list(failures) == ["benchmark"]  # every other gate passes: only the benchmarks stop it
    assert failures["benchmark"].startswith("benchmarks not beaten") and "buy_and_hold" in failures["benchmark"]
    assert "<= 0.00" in failures["benchmark"]
    ahead = {"buy_and_hold": information_ratio(hold, strategy)}
    assert gate_failures(0.99, 0.1, 3.0, 500, GateThresholds(), ahead) == {}
    assert "benchmark" in gate_failures(0.99, 0.1, 3.0, 500, GateThresholds(min_information_ratio=50.0), ahead)


@settings(max_examples=60, deadline=None)
@given(a=st.lists(st.floats(-0.2, 0.2), min_size=3, max_size=40), seed=st.integers(0, 1000))
def test_information_ratio_is_positive_exactly_when_the_strategy_compounds_more(a, seed):
    strategy = pd.Series(a, index=pd.bdate_range("2020-01-01", periods=len(a)))
    bench = pd.Series(np.random.default_rng(seed).uniform(-0.2, 0.2, len(a)), index=strategy.index)
    ir = information_ratio(strategy, bench)
    wealth = np.log1p(strategy).sum() - np.log1p(bench).sum()
    if math.isfinite(ir) and abs(wealth) > 1e-9:
        assert (ir > 0) == (wealth > 0)


# -- the DSR counts every trial of the family -------------------------------------------------------

def test_dsr_counts_every_trial_of_the_family(research_dir):
    import json

    from alphatwin_pipelines.reports.portfolio import run_portfolios
    from alphatwin_pipelines.stages.validation import validate_strategies
    from alphatwin_pipelines.storage import TableStore
    from alphatwin_pipelines.tables import OPTIMISATION_TRIALS, read_adjusted
    from test_validation_reports import write_study_tables

    store = TableStore(research_dir)
    written = write_study_tables(store, [("ma_cross", 0), ("ma_cross", 2), ("rsi_reversion", 0)], n_symbols=6,
                                 n_trials=5).set_index("strategy_id")
    run = validate_strategies(store, ValidationSettings(train=100, test=80, trials_per_window=2))
    reports = run.reports.set_index("strategy_id")
    trials = store.read_table(OPTIMISATION_TRIALS)
    universe = MarketArrays.from_bars(read_adjusted(store))
    assert sum(len(v.windows) for v in run.validations) > 0
    for family, rows in written.groupby("family"):
        mine = [v for v in run.validations if v.spec.family == family]
        n = int(rows["n_trials"].sum()) + sum(v.walk_forward.n_trials for v in mine)
        sharpes = np.concatenate([trials[trials["strategy_id"].isin(rows.index)]["sharpe"].to_numpy(float),
                                  *[v.walk_forward.trial_sharpes for v in mine]])
        for v in mine:
            row = rows.loc[v.strategy_id]
            assert reports.loc[v.strategy_id, "dsr_n_trials"] == v.dsr_trials == n
            assert f"N = {n} trials" in (Path(research_dir) / "reports" / f"{v.strategy_id}.html").read_text()
            market = universe.select(json.loads(row["symbols_json"]))
            returns = run_portfolios([v.spec], market, CostModel()).returns[0]
            in_sample = returns[(returns.index >= row["start"]) & (returns.index <= row["end"])]
            assert v.dsr == pytest.approx(deflated_sharpe(float(row["is_sharpe"]), n, sharpes, in_sample), rel=1e-9)
    ma = [v for v in run.validations if v.spec.family == "ma_cross"]
    rsi = [v for v in run.validations if v.spec.family == "rsi_reversion"]
    assert ma[0].dsr_trials == ma[1].dsr_trials == 10 + ma[0].walk_forward.n_trials + ma[1].walk_forward.n_trials
    assert rsi[0].dsr_trials == 5 + rsi[0].walk_forward.n_trials


def test_trial_returns_in_chunks_equal_one_simulation_of_all(monkeypatch):
    from alphatwin_pipelines.reports.evaluate import trial_returns
    from alphatwin_pipelines.strategies import families

    monkeypatch.setattr(families, "INDICATOR_BUDGET", 0)  # every array dropped as the next one is cached
    from alphatwin_pipelines.reports.portfolio import run_portfolios

    specs = [StrategySpec("ma_cross", {"fast": f, "slow": s}, 0) for f, s in ((5, 20), (10, 50), (8, 30), (3, 12),
                                                                              (20, 60))]
    together = run_portfolios(specs, MARKET, CostModel()).returns
    chunked = trial_returns(specs, MARKET, CostModel(), chunk=2)
    assert list(chunked.columns) == list(range(len(specs)))
    pd.testing.assert_frame_equal(chunked, together, check_exact=True)


def test_walk_forward_keeps_the_stitched_accounts_of_its_test_windows(tmp_path):
    from alphatwin_pipelines.reports.portfolio import simulate_portfolios

    wf = run(MARKET, tmp_path, trials=2)
    full = simulate_portfolios(reoptimise.oos_signals(wf.specs, wf.splits, MARKET), MARKET, CostModel())
    expected = pd.concat([full.symbol_exposure[w.index].loc[w.test_start:w.test_end] for w in wf.splits])
    pd.testing.assert_frame_equal(wf.accounts, expected, check_exact=True)
    assert wf.accounts.index.equals(wf.oos_returns.index) and list(wf.accounts.columns) == list(MARKET.symbols)


def test_the_shared_indicator_cache_changes_no_window_choice(monkeypatch, tmp_path):
    for name in ("shared", "alone"):  # separate storages: a stored window study would be reused
        (tmp_path / name).mkdir()
    shared = run(MARKET, tmp_path / "shared", trials=4, seed=5)
    monkeypatch.setattr(reoptimise, "PrefixIndicators", lambda market, _shared: reoptimise.Indicators(market))
    alone = run(MARKET, tmp_path / "alone", trials=4, seed=5)
    pd.testing.assert_frame_equal(shared.windows, alone.windows, check_exact=True)
    pd.testing.assert_series_equal(shared.oos_returns, alone.oos_returns, check_exact=True)


def test_dropping_cached_indicators_past_the_budget_changes_no_window_choice(monkeypatch, tmp_path):
    for name in ("kept", "emptied"):  # separate storages: a stored window study would be reused
        (tmp_path / name).mkdir()
    kept = run(MARKET, tmp_path / "kept", trials=4, seed=5)
    from alphatwin_pipelines.strategies import families

    monkeypatch.setattr(families, "INDICATOR_BUDGET", 0)  # every array dropped as the next one is cached
    emptied = run(MARKET, tmp_path / "emptied", trials=4, seed=5)
    assert len(kept.windows) >= 2
    pd.testing.assert_frame_equal(emptied.windows, kept.windows, check_exact=True)
    pd.testing.assert_series_equal(emptied.oos_returns, kept.oos_returns, check_exact=True)
