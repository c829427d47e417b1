"""Validate one optimised strategy: walk-forward OOS, DSR, PBO, costs, regimes, benchmarks, gates.

Walk-forward re-optimisation is a seeded random search: ``n_candidates`` parameter sets of the
strategy's family and level (the level's defaults first, then ``sample_params(seed)``) are run
over the whole history in ONE vectorised simulation; in each rolling train window the candidate
with the best train-window Sharpe is chosen and its returns over the following test window are
kept. Because every signal and cost at t uses data up to t only, a candidate's returns up to a
date are the same whether the simulation stops there or runs on, so choosing from the full run
by train-window rows is the same as re-running the search on the train window alone. The
study's own best spec is *not* a candidate: it was chosen with data from the test windows.
A candidate carries whatever position it holds at a test window's start (it has been "running"
on those parameters); returns before the first test window are never used.

DSR deflates the study's in-sample Sharpe (``is_sharpe``) by the study's real ``n_trials`` and
the variance of its trials' Sharpes (``optimisation_trials.sharpe``, annualised, converted to
per session); skew and kurtosis come from re-running the best spec over the in-sample window.
PBO runs CSCV over the return streams of every trial's parameters, re-run over the same window.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from alphatwin_pipelines.backtest import CostModel
from alphatwin_pipelines.reports.gates import GateThresholds, gate_failures
from alphatwin_pipelines.reports.portfolio import BookReturns, scale_costs, simulate_portfolios, spec_signals
from alphatwin_pipelines.reports.regimes import regime_breakdown
from alphatwin_pipelines.strategies import MarketArrays, StrategySpec, default_params, sample_params
from alphatwin_pipelines.stats import (
    compute_metrics, deflated_sharpe_ratio, kurtosis, probability_of_backtest_overfitting, sharpe_ratio,
    skewness, walk_forward, walk_forward_windows,
)
from alphatwin_pipelines.stats.metrics import PERIODS_PER_YEAR, n_trades

REPORTED_METRICS = ("sharpe", "sortino", "cagr", "total_return", "volatility", "max_drawdown",
                    "max_drawdown_duration", "win_rate", "profit_factor", "exposure", "n_trades",
                    "avg_holding_period")


@dataclass(frozen=True)
class ValidationSettings:
    train: int = 252
    test: int = 63
    n_candidates: int = 500  # the research budget per window (issue #15); make run passes 8
    seed: int = 0
    pbo_splits: int = 16
    cost_multipliers: tuple[float, ...] = (0.0, 1.0, 2.0)
    costs: CostModel = field(default_factory=CostModel)
    thresholds: GateThresholds = field(default_factory=GateThresholds)

    def to_dict(self) -> dict:
        c = self.costs
        return {"train": self.train, "test": self.test, "n_candidates": self.n_candidates, "seed": self.seed,
                "pbo_splits": self.pbo_splits, "cost_multipliers": list(self.cost_multipliers),
                "costs": {"fees_bps": c.fees_bps, "slippage_bps": c.slippage_bps, "impact_k_bps": c.impact_k_bps,
                          "adv_window": c.adv_window, "impact_notional": c.impact_notional}}

    @classmethod
    def from_dict(cls, d: dict, thresholds: GateThresholds | None = None) -> "ValidationSettings":
        return cls(train=d["train"], test=d["test"], n_candidates=d["n_candidates"], seed=d["seed"],
                   pbo_splits=d["pbo_splits"], cost_multipliers=tuple(d["cost_multipliers"]),
                   costs=CostModel(**d["costs"]), thresholds=thresholds or GateThresholds())


@dataclass
class StrategyValidation:
    strategy_id: str
    spec: StrategySpec
    symbols: list[str]
    oos_returns: pd.Series
    oos_metrics: dict
    windows: pd.DataFrame  # per window: dates, chosen params, train and test Sharpe
    dsr: float
    pbo: float
    cost_sensitivity: pd.DataFrame  # per cost multiplier: total return, CAGR, Sharpe of the OOS stream
    regimes: pd.DataFrame
    benchmarks: pd.DataFrame  # per benchmark: OOS-window metrics
    benchmark_returns: pd.DataFrame  # benchmarks' daily returns over the OOS dates
    positions: pd.DataFrame  # symbol, weight after the last close (the study's best spec)
    failures: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.failures


def candidate_specs(family: str, level: int, n: int, seed: int) -> list[StrategySpec]:
    """The level's defaults then seeded random draws, duplicates dropped, ``n`` in all at most."""
    out, seen = [], set()
    for params in [default_params(family, level), *sample_params(family, level, max(n - 1, 0), seed)]:
        spec = StrategySpec(family, params, level)
        if spec.spec_hash() not in seen:
            seen.add(spec.spec_hash())
            out.append(spec)
    return out[:n]


def trial_specs(trials: pd.DataFrame, family: str, level: int) -> list[StrategySpec]:
    """One spec per distinct parameter set the study tried (failed trials with no params skipped)."""
    out, seen = [], set()
    for number, text in zip(trials["trial_number"], trials["params_json"]):
        if text is None or (isinstance(text, float) and math.isnan(text)) or not str(text).strip():
            continue
        try:
            spec = StrategySpec(family, json.loads(text), level)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"optimisation_trials: trial {number} of {family} level {level} has params "
                             f"that do not make a valid spec ({exc}); re-run the optimisation") from exc
        if spec.spec_hash() not in seen:
            seen.add(spec.spec_hash())
            out.append(spec)
    return out


def _best_column(returns: pd.DataFrame) -> int:
    srs = np.asarray(sharpe_ratio(returns), dtype=float)
    return int(np.argmax(np.where(np.isnan(srs), -np.inf, srs)))


def run_walk_forward(pf: BookReturns, candidates: range, train: int, test: int):
    """Choose a candidate per train window by Sharpe; stitch the chosen test-window returns."""
    try:
        windows = walk_forward_windows(pf.returns.index, train, test)
    except ValueError as exc:
        raise ValueError(f"walk-forward needs more history than {len(pf.returns)} sessions for train={train}, "
                         f"test={test}: lower the windows or load more sessions ({exc})") from exc
    grid = pf.returns[list(candidates)]

    def choose(train_rows: pd.DataFrame):
        return grid.columns[_best_column(grid.loc[train_rows.index])]

    def trade(test_rows: pd.DataFrame, k) -> pd.Series:
        return grid[k].loc[test_rows.index]

    result = walk_forward(trade, choose, pd.DataFrame(index=grid.index), windows)
    rows = []
    for w, k in zip(windows, result.params):
        rows.append({"window": w.index, "train_start": w.train_start, "train_end": w.train_end,
                     "test_start": w.test_start, "test_end": w.test_end, "candidate": int(k),
                     "train_sharpe": float(sharpe_ratio(grid[k].iloc[w.train_positions])),
                     "test_sharpe": float(sharpe_ratio(grid[k].iloc[w.test_positions]))})
    return result, pd.DataFrame(rows)


def stitch(frame: pd.DataFrame, windows: pd.DataFrame) -> pd.Series:
    """Column ``candidate`` of ``frame`` over each window's test dates, concatenated."""
    parts = [frame[w.candidate].loc[w.test_start:w.test_end] for w in windows.itertuples()]
    return pd.concat(parts)


def oos_metrics(pf: BookReturns, windows: pd.DataFrame, oos: pd.Series) -> dict:
    """Metrics of the stitched stream; trades and holding periods counted per symbol account."""
    exposure = stitch(pf.exposure, windows)
    metrics = compute_metrics(oos, positions=exposure)
    accounts = pd.concat([pf.symbol_exposure[w.candidate].loc[w.test_start:w.test_end]
                         for w in windows.itertuples()])
    trades = float(np.sum(n_trades(accounts)))
    held = float((accounts.to_numpy() != 0).sum())
    metrics["n_trades"] = trades
    metrics["avg_holding_period"] = held / trades if trades else math.nan
    return metrics


def deflated_sharpe(is_sharpe: float, n_trials: int, trial_sharpes, is_returns: pd.Series) -> float:
    """DSR of the study's in-sample Sharpe against ``n_trials`` trials with the trials' SR variance."""
    srs = np.asarray(pd.to_numeric(pd.Series(trial_sharpes), errors="coerce"), dtype=float)
    srs = srs[np.isfinite(srs)]
    if not (np.isfinite(is_sharpe) and n_trials >= 1):
        return math.nan
    variance = float(np.var(srs, ddof=1)) / PERIODS_PER_YEAR if len(srs) > 1 else 0.0
    r = is_returns.dropna()
    return deflated_sharpe_ratio(is_sharpe / math.sqrt(PERIODS_PER_YEAR), len(r), int(n_trials), variance,
                                 skewness(r), kurtosis(r))


def backtest_overfitting(trial_returns: pd.DataFrame, n_splits: int) -> float:
    """CSCV PBO over the trials' in-sample streams; NaN with < 2 trials or too few sessions."""
    rows = len(trial_returns)
    n_splits = min(int(n_splits), (rows // 2) // 2 * 2)
    if trial_returns.shape[1] < 2 or n_splits < 2:
        return math.nan
    return probability_of_backtest_overfitting(trial_returns.fillna(0.0), n_splits=n_splits).pbo


def cost_sensitivity(pf: BookReturns, signals: list, windows: pd.DataFrame,
                     market: MarketArrays, settings: ValidationSettings) -> pd.DataFrame:
    """The walk-forward's own choices (same signals) re-simulated with every cost multiplied."""
    chosen = sorted({int(k) for k in windows["candidate"]})
    rows = []
    for factor in settings.cost_multipliers:
        if factor == 1.0:
            returns = pf.returns
        else:
            parts = {k: signals[k] for k in chosen}
            returns = simulate_portfolios(parts, market, scale_costs(settings.costs, factor)).returns
        m = compute_metrics(stitch(returns, windows))
        rows.append({"cost_multiplier": float(factor), "total_return": m["total_return"], "cagr": m["cagr"],
                     "sharpe": m["sharpe"], "max_drawdown": m["max_drawdown"]})
    return pd.DataFrame(rows)


def validate_strategy(row: dict, trials: pd.DataFrame, market: MarketArrays, benchmarks: pd.DataFrame,
                      labels: pd.DataFrame, settings: ValidationSettings) -> StrategyValidation:
    """Everything in the module docstring for one ``optimised_strategies`` row on its symbols' ``market``."""
    spec = StrategySpec.from_json(row["spec_json"])
    candidates = candidate_specs(spec.family, spec.level, settings.n_candidates, settings.seed)
    tried = trial_specs(trials, spec.family, spec.level)
    signals = spec_signals([*candidates, spec, *tried], market)
    pf = simulate_portfolios(dict(enumerate(signals)), market, settings.costs)
    result, windows = run_walk_forward(pf, range(len(candidates)), settings.train, settings.test)
    oos = result.oos_returns.rename("return")
    best = len(candidates)
    dates = pf.returns.index
    in_sample = (dates >= pd.Timestamp(row["start"])) & (dates <= pd.Timestamp(row["end"]))
    dsr = deflated_sharpe(float(row["is_sharpe"]), int(row["n_trials"]), trials["sharpe"],
                          pf.returns.loc[in_sample, best])
    pbo = backtest_overfitting(pf.returns.loc[in_sample, list(range(best + 1, best + 1 + len(tried)))],
                               settings.pbo_splits)
    metrics = oos_metrics(pf, windows, oos)
    bench = benchmarks.reindex(oos.index)
    bench_rows = [{"name": "strategy (walk-forward)", **{k: metrics[k] for k in REPORTED_METRICS}}]
    for name in bench.columns:
        m = compute_metrics(bench[name])
        bench_rows.append({"name": name, **{k: m.get(k, math.nan) for k in REPORTED_METRICS}})
    windows = windows.assign(params=[json.dumps(dict(candidates[k].params), sort_keys=True)
                                     for k in windows["candidate"]])
    weights = pf.weights[best].iloc[-1]
    positions = pd.DataFrame({"symbol": list(weights.index), "weight": weights.to_numpy(dtype=float)})
    failures = gate_failures(dsr, pbo, metrics["sharpe"], int(row["n_trials"]), settings.thresholds)
    return StrategyValidation(
        strategy_id=str(row["strategy_id"]), spec=spec, symbols=list(market.symbols), oos_returns=oos,
        oos_metrics=metrics, windows=windows, dsr=dsr, pbo=pbo,
        cost_sensitivity=cost_sensitivity(pf, signals, windows, market, settings),
        regimes=regime_breakdown(oos, labels), benchmarks=pd.DataFrame(bench_rows), benchmark_returns=bench,
        positions=positions, failures=failures)
