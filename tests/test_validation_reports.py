"""Validation reports: golden metrics on real bars, costs, no look-ahead, replay, HTML, the asset and its gates.

Worked DSR/PBO examples live in test_validation_stats.py. The optimised tables are written here
in the contract's columns from real backtests of real specs (a seeded random study).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines.adjustment import adjust
from alphatwin_pipelines.backtest import CostModel
from alphatwin_pipelines.reports import GateThresholds, ValidationSettings, gate_failures, regime_labels, validate_strategy
from alphatwin_pipelines.reports.portfolio import benchmark_returns, run_portfolios
from alphatwin_pipelines.schema import frame_to_arrow
from alphatwin_pipelines.stages.validation import replay_validation, validate_strategies
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.strategies import MarketArrays, StrategySpec, complexity_score, sample_params
from alphatwin_pipelines.stats import compute_metrics, sharpe_ratio
from alphatwin_pipelines.tables import (
    ALLOCATIONS, OPTIMISATION_TRIALS, OPTIMISED, STRATEGY_POSITIONS, STRATEGY_RETURNS, VALIDATION, read_adjusted,
    resolve_stored_path,
)

REAL_SYMBOLS = ["AAPL", "MSFT", "JNJ", "XOM"]


#: A small re-optimisation budget per walk-forward window (the default is the research scale).

def study(market: MarketArrays, family: str, level: int, n: int, start, end, seed: int = 3):
    """An ``optimised_strategies`` row and its ``optimisation_trials`` from a seeded random study."""
    params = sample_params(family, level, n, seed)
    specs = [StrategySpec(family, p, level) for p in params]
    pf = run_portfolios(specs, market, CostModel())
    ins = pf.returns.loc[start:end]
    srs = np.asarray(sharpe_ratio(ins), dtype=float)
    best = int(np.nanargmax(srs))
    spec, m = specs[best], compute_metrics(ins[best], positions=pf.exposure.loc[start:end, best])
    row = dict(strategy_id=spec.spec_hash(), family=family, level=level, complexity=complexity_score(spec),
               spec_json=spec.to_json(), symbols_json=json.dumps(list(market.symbols)), start=pd.Timestamp(start),
               end=pd.Timestamp(end), n_trials=n, n_complete=n, n_pruned=0, seed=seed, study_name=f"{family}-{level}",
               is_sharpe=m["sharpe"], is_sortino=m["sortino"], is_cagr=m["cagr"], is_max_drawdown=m["max_drawdown"],
               is_trades=m["n_trades"], scanner_partition=f"{pd.Timestamp(end):%Y-%m-%d}",
               record_json=json.dumps({"spec": spec.to_json(), "seed": seed}))
    trials = pd.DataFrame({"strategy_id": row["strategy_id"], "family": family, "level": level,
                           "trial_number": range(n), "state": "COMPLETE",
                           "params_json": [json.dumps(p, sort_keys=True) for p in params], "sharpe": srs})
    return row, trials


def write_study_tables(store: TableStore, studies, n_symbols: int = 12, n_trials: int = 8):
    market = MarketArrays.from_bars(read_adjusted(store))
    market = market.select(list(market.symbols[:n_symbols]))
    rows, trials = zip(*(study(market, f, lvl, n_trials, market.dates[0], market.dates[-1]) for f, lvl in studies))
    store.write_table(OPTIMISED, frame_to_arrow(pd.DataFrame(list(rows))))
    store.write_table(OPTIMISATION_TRIALS, frame_to_arrow(pd.concat(trials, ignore_index=True)))
    return pd.DataFrame(list(rows))


# -- real data --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_bars(sp500_bars):
    raw = sp500_bars[sp500_bars["symbol"].isin(REAL_SYMBOLS) & sp500_bars["date"].between("2010-01-01", "2015-12-31")]
    return adjust(raw.reset_index(drop=True))


@pytest.fixture(scope="module")
def real_market(real_bars):
    return MarketArrays.from_bars(real_bars, price="adj")


def independent_sma_portfolio(bars: pd.DataFrame, fast=20, slow=50, cash=100_000.0) -> pd.Series:
    """SMA crossover accounts with no costs, written without the engine: enter when the fast mean
    crosses above the slow one, leave when it is below; fill at the next open; the book is the
    daily mean of the symbols' returns."""
    per_symbol = {}
    for _, g in bars.sort_values("date").groupby("symbol"):
        close, opens = g["adj_close"].to_numpy(), g["adj_open"].to_numpy()
        f = pd.Series(close).rolling(fast).mean().to_numpy()
        s = pd.Series(close).rolling(slow).mean().to_numpy()
        money, shares, long, pending, equity = cash, 0.0, False, None, []
        for t in range(len(close)):
            if pending == "buy":
                shares, money = money / opens[t], 0.0
            elif pending == "sell":
                money, shares = shares * opens[t], 0.0
            pending = None
            equity.append(money + shares * close[t])
            if t >= 1 and not np.isnan(s[t - 1]):
                if not long and f[t] - s[t] > 0 and f[t - 1] - s[t - 1] <= 0:
                    long, pending = True, "buy"
                elif long and f[t] - s[t] < 0:
                    long, pending = False, "sell"
        equity = pd.Series(equity, index=pd.DatetimeIndex(g["date"]))
        per_symbol[g["symbol"].iloc[0]] = equity / equity.shift(1).fillna(cash) - 1.0
    return pd.DataFrame(per_symbol).mean(axis=1)


def test_golden_metrics_sma_20_50_on_real_bars(real_bars, real_market):
    ours = run_portfolios([StrategySpec("ma_cross", {"fast": 20, "slow": 50}, 0)], real_market, CostModel.zero())
    r = ours.returns[0]
    ref = independent_sma_portfolio(real_bars).reindex(r.index)
    np.testing.assert_allclose(r.to_numpy(), ref.to_numpy(), rtol=0, atol=1e-12)
    m = compute_metrics(r)
    x = ref.to_numpy()
    equity = np.cumprod(1 + x)
    peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    downside = np.sqrt(np.mean(np.minimum(x, 0) ** 2))
    assert m["sharpe"] == pytest.approx(x.mean() / x.std(ddof=1) * math.sqrt(252), rel=1e-10)
    assert m["sortino"] == pytest.approx(x.mean() / downside * math.sqrt(252), rel=1e-10)
    assert m["cagr"] == pytest.approx(equity[-1] ** (252 / len(x)) - 1, rel=1e-10)
    assert m["max_drawdown"] == pytest.approx(np.max(1 - equity / peak), rel=1e-10)
    assert m["win_rate"] == pytest.approx((x > 0).sum() / ((x > 0).sum() + (x < 0).sum()), rel=1e-12)
    assert m["profit_factor"] == pytest.approx(x[x > 0].sum() / -x[x < 0].sum(), rel=1e-10)
    assert 0.5 < m["sharpe"] < 1.5  # a 2010-2015 large-cap crossover: positive, not miraculous


# A few trials per walk-forward window keep the real-data tests quick; the logic is the same at 500.
REAL_SETTINGS = ValidationSettings(trials_per_window=3)


@pytest.fixture(scope="module")
def real_validation(real_market):
    row, trials = study(real_market, "donchian_breakout", 3, 10, "2010-01-04", "2012-12-31")
    bench = benchmark_returns(real_market, real_market, CostModel())
    labels = regime_labels(real_market)
    return row, trials, validate_strategy(row, trials, real_market, bench, labels, REAL_SETTINGS)


def test_walk_forward_on_real_bars_reports_every_section(real_validation, real_market):
    row, _, v = real_validation
    assert len(v.windows) == (len(v.oos_returns) + 62) // 63 and v.windows["train_end"].lt(v.windows["test_start"]).all()
    wf = v.walk_forward
    assert wf.purge == wf.lookback + wf.horizon > 0 and wf.embargo == REAL_SETTINGS.embargo
    first = v.windows.iloc[0]
    dates = real_market.dates
    assert dates.get_loc(first["test_start"]) - dates.get_loc(first["train_end"]) == wf.purge + wf.embargo + 1
    assert (v.windows["trials"] == REAL_SETTINGS.trials_per_window).all()
    assert v.dsr_trials == row["n_trials"] + wf.n_trials == 10 + 3 * len(v.windows)
    assert v.oos_returns.index.is_unique and v.oos_returns.notna().all()
    assert 0 <= v.dsr <= 1 and 0 <= v.pbo <= 1
    assert set(v.benchmarks["name"]) == {"strategy (walk-forward)", "buy_and_hold", "equal_weight_universe", "sma_50_200"}
    assert set(v.regimes["label"]) <= {"bull", "bear", "high", "low", "unknown"}
    assert v.regimes.groupby("regime")["sessions"].sum().eq(len(v.oos_returns)).all()
    assert v.oos_metrics["n_trades"] > 0 and v.oos_metrics["avg_holding_period"] > 0
    assert v.positions["weight"].between(0, 1).all() and v.positions["weight"].sum() <= 1 + 1e-9


def test_cost_sensitivity_is_monotone(real_validation):
    costs = real_validation[2].cost_sensitivity.set_index("cost_multiplier")
    assert list(costs.index) == [0.0, 1.0, 2.0]
    assert costs.loc[0.0, "total_return"] > costs.loc[1.0, "total_return"] > costs.loc[2.0, "total_return"]
    assert costs.loc[0.0, "sharpe"] > costs.loc[2.0, "sharpe"]


def _perturbed_after(bars: pd.DataFrame, cutoff: str) -> pd.DataFrame:
    out = bars.copy()
    later = out["date"] > pd.Timestamp(cutoff)
    noise = np.random.default_rng(1).uniform(0.7, 1.3, later.sum())
    for col in ("adj_open", "adj_high", "adj_low", "adj_close"):
        out.loc[later, col] = out.loc[later, col].to_numpy() * noise
    return out


def test_no_look_ahead_in_walk_forward_or_regime_labels(real_bars, real_market, real_validation):
    row, trials, v = real_validation
    cutoff = "2014-06-30"
    changed = MarketArrays.from_bars(_perturbed_after(real_bars, cutoff), price="adj")
    labels = regime_labels(changed)
    assert labels.loc[:cutoff].equals(regime_labels(real_market).loc[:cutoff])
    assert not labels.equals(regime_labels(real_market))
    again = validate_strategy(row, trials, changed, benchmark_returns(changed, changed, CostModel()), labels,
                              REAL_SETTINGS)
    before = v.oos_returns.loc[:cutoff]
    assert len(before) > 300
    pd.testing.assert_series_equal(again.oos_returns.loc[:cutoff], before, check_exact=True)
    assert not again.oos_returns.loc[cutoff:].iloc[1:].equals(v.oos_returns.loc[cutoff:].iloc[1:])


def test_gates_explain_each_failure():
    strict = GateThresholds(min_dsr=0.95, max_pbo=0.5, min_oos_sharpe=0.5)
    assert gate_failures(0.99, 0.2, 1.1, 50, strict, {"buy_and_hold": 0.3}) == {}
    failed = gate_failures(0.40, 0.8, float("nan"), 50, strict)
    assert failed["dsr"].startswith("DSR 0.40 < 0.95") and "50 trials" in failed["dsr"]
    assert failed["pbo"].startswith("PBO 0.80 > 0.50")
    assert "not measurable" in failed["oos_sharpe"]
    assert failed["benchmark"].startswith("benchmarks not measurable")
    with pytest.raises(ValueError, match="max_pbo is a probability"):
        GateThresholds(max_pbo=1.5)


# -- stage and asset on the synthetic research fixture -----------------------------------------

STUDIES = [("ma_cross", 0), ("donchian_breakout", 3), ("ts_momentum", 7)]
# Two years of fixture bars: short train windows so the level-0 spec gets a walk-forward (the level-7
# one's purge is longer than the history: its report says so), a few trials per window.
FAST = {"train_sessions": 100, "test_sessions": 40, "trials_per_window": 3}
OPEN_GATES = dict(min_dsr=0.0, max_pbo=1.0, min_oos_sharpe=-1e9, min_information_ratio=-1e9)


def _hashes(data_dir) -> dict:
    paths = [data_dir / f"{t}.parquet" for t in (VALIDATION, STRATEGY_RETURNS, STRATEGY_POSITIONS)]
    paths += sorted((data_dir / "reports").glob("*.html"))
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _materialize(data_dir, *also, **config):
    from assets.resources import DaskResource, OptunaResource, StorageResource
    from assets.validation import validation_reports

    config = {**FAST, **config}
    return dg.materialize([validation_reports, *also], resources={"storage": StorageResource(data_dir=str(data_dir)),
                                                                  "optuna": OptunaResource(),
                                                                  "dask": DaskResource()},  # no scheduler: in process
                          run_config={"ops": {"validation_reports": {"config": config}}}, raise_on_error=False)


@pytest.fixture
def validated_dir(research_dir):
    write_study_tables(TableStore(research_dir), STUDIES)
    return research_dir


def test_asset_twice_gives_same_bytes_and_replays_from_record(validated_dir):
    (validated_dir / "reports").mkdir()
    stale, other = validated_dir / "reports" / f"{'ab' * 32}.html", validated_dir / "reports" / "curve.png"
    stale.write_text("a strategy validated by an earlier run")
    other.write_bytes(b"not ours")
    # Gates that every strategy clears: this test is about bytes and replays, not about whether the
    # fixture's market happens to hold a strategy that survives PBO (the gate tests cover that).
    first = _materialize(validated_dir, **OPEN_GATES)
    assert first.success
    assert not stale.exists() and other.exists()
    hashes = _hashes(validated_dir)
    assert len(hashes) == 3 + len(STUDIES)
    assert _materialize(validated_dir, **OPEN_GATES).success
    assert _hashes(validated_dir) == hashes

    reports = TableStore(validated_dir).read_table(VALIDATION)
    assert len(reports) == len(STUDIES) and reports["strategy_id"].is_monotonic_increasing
    for row in reports.itertuples():
        replayed = replay_validation(row.record_json, validated_dir)
        np.testing.assert_array_equal([replayed["sharpe"], replayed["sortino"], replayed["cagr"], replayed["max_drawdown"]],
                                      [row.oos_sharpe, row.oos_sortino, row.oos_cagr, row.oos_max_drawdown])
        assert bool(row.passed) == (row.reasons == "")
    returns = TableStore(validated_dir).read_table(STRATEGY_RETURNS)
    traded = reports[reports["wf_windows"] > 0]
    assert set(returns["strategy_id"]) == set(traded["strategy_id"]) and returns["return"].notna().all()
    assert 0 < len(traded) < len(reports)  # the level-7 spec's purge does not fit in two years of bars
    untraded = reports[reports["wf_windows"] == 0]
    assert untraded["reasons"].str.contains("walk-forward impossible: .* sessions needed").all()
    positions = TableStore(validated_dir).read_table(STRATEGY_POSITIONS)
    assert list(positions.columns) == ["strategy_id", "symbol", "date", "weight", "gross_exposure", "net_exposure"]

    page = (validated_dir / "reports" / f"{reports['strategy_id'].iloc[0]}.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "Monthly out-of-sample returns" in page
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, urls  # namespaces, never fetched
    assert not re.search(r"<(script|link|img|iframe)\b", page)


def test_report_paths_are_relative_and_resolve_after_the_data_dir_moves(validated_dir, tmp_path):
    assert _materialize(validated_dir, **OPEN_GATES).success
    stored = TableStore(validated_dir).read_table(VALIDATION)["report_path"].tolist()
    assert stored and all(not Path(p).is_absolute() and p.startswith("reports/") for p in stored)
    moved = tmp_path / "mounted" / "elsewhere"
    shutil.move(validated_dir, moved)
    store = TableStore(moved)
    for p in store.read_table(VALIDATION)["report_path"]:
        page = resolve_stored_path(store, p)
        assert page.parent == moved / "reports" and page.read_text().startswith("<!DOCTYPE html>")


def test_gate_checks_warn_with_reasons_when_no_strategy_clears(validated_dir):
    from assets.portfolio import portfolio_allocations

    result = _materialize(validated_dir, portfolio_allocations, min_oos_sharpe=50.0)
    assert result.success  # the gates do not block: the allocation downstream holds cash and says why
    cash = result.asset_materializations_for_node(ALLOCATIONS)[0].metadata["cash"].value
    assert cash.startswith(f"cash: no strategy passed (none of the {len(STUDIES)} strategies") and "< 50.00" in cash
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    oos = checks["oos_sharpe_gate"]
    assert not oos.passed and oos.severity == dg.AssetCheckSeverity.WARN
    assert oos.metadata["failing"].value == len(STUDIES)
    assert "out-of-sample Sharpe" in oos.metadata["failures"].value and "< 50.00" in oos.metadata["failures"].value
    reports = TableStore(validated_dir).read_table(VALIDATION)
    assert not reports["passed"].any()
    assert reports["reasons"].str.contains("< 50.00|walk-forward impossible|Sharpe not measurable").all()
    assert reports["reasons"].str.contains("< 50.00").any()


def test_bad_optimised_table_names_the_problem(validated_dir):
    store = TableStore(validated_dir)
    rows = store.read_table(OPTIMISED)
    store.write_table(OPTIMISED, frame_to_arrow(rows.assign(symbols_json=json.dumps(["NOPE"]))))
    with pytest.raises(ValueError, match=r"symbols with no cleaned bars \(\['NOPE'\]\)"):
        validate_strategies(store)
    store.write_table(OPTIMISED, frame_to_arrow(rows.drop(columns=["n_trials"])))
    with pytest.raises(ValueError, match=r"lacks contract columns \['n_trials'\]"):
        validate_strategies(store)
