"""Validate one optimised strategy: walk-forward OOS, DSR, PBO, costs, regimes, benchmarks, gates.

Walk-forward re-runs the study's optimiser in every train window on that window's data only
and trades the next test window with what it chose (:mod:`.reoptimise`: purge, embargo, seeds).
The study's own best spec is never traded out of sample: it was chosen with data from the test
windows. The report adds walk-forward efficiency (OOS Sharpe over the windows' in-sample
Sharpe) and parameter stability across windows.

DSR deflates the study's in-sample Sharpe (``is_sharpe``) by every trial actually run for the
strategy's family (:class:`TrialCount`: the family's studies at all levels plus every walk-forward
window's study; the stage counts the whole family, a lone call counts the strategy's own) and
the variance of those trials' Sharpes (annualised, converted to per session); skew and kurtosis
come from re-running the best spec over the in-sample window. PBO runs CSCV over the return
streams of every trial's parameters, re-run over the same window.

The benchmark gate compares the stitched OOS stream with each benchmark of the report over the
same sessions (information ratio of log active returns, :mod:`alphatwin_pipelines.stats.benchmark`).
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
from alphatwin_pipelines.reports.reoptimise import (
    WF_MODES, WalkForwardRun, parameter_stability, reoptimise_walk_forward, oos_signals, walk_forward_efficiency,
)
from alphatwin_pipelines.strategies import Indicators, MarketArrays, StrategySpec
from alphatwin_pipelines.stats import (
    compute_metrics, deflated_sharpe_ratio, information_ratio, kurtosis, probability_of_backtest_overfitting,
    skewness,
)
from alphatwin_pipelines.stats.metrics import PERIODS_PER_YEAR, n_trades

REPORTED_METRICS = ("sharpe", "sortino", "cagr", "total_return", "volatility", "max_drawdown",
                    "max_drawdown_duration", "win_rate", "profit_factor", "exposure", "n_trades",
                    "avg_holding_period")


@dataclass(frozen=True)
class ValidationSettings:
    train: int = 252
    test: int = 63
    mode: str = "rolling"  # or "anchored": train windows grow from the first session
    trials_per_window: int = 50  # each walk-forward window's own study budget
    embargo: int = 5  # sessions after the purge (lookback + holding horizon) before a test window
    seed: int = 0
    pbo_splits: int = 16
    cost_multipliers: tuple[float, ...] = (0.0, 1.0, 2.0)
    costs: CostModel = field(default_factory=CostModel)
    thresholds: GateThresholds = field(default_factory=GateThresholds)

    def __post_init__(self):
        if self.mode not in WF_MODES:
            raise ValueError(f"walk-forward mode must be one of {WF_MODES}, got {self.mode!r}")
        for name in ("train", "test", "trials_per_window"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if int(self.embargo) < 0:
            raise ValueError(f"embargo must be >= 0 sessions, got {self.embargo}")

    def to_dict(self) -> dict:
        c = self.costs
        return {"train": self.train, "test": self.test, "mode": self.mode, "trials_per_window": self.trials_per_window,
                "embargo": self.embargo, "seed": self.seed, "pbo_splits": self.pbo_splits,
                "cost_multipliers": list(self.cost_multipliers),
                "costs": {"fees_bps": c.fees_bps, "slippage_bps": c.slippage_bps, "impact_k_bps": c.impact_k_bps,
                          "adv_window": c.adv_window, "impact_notional": c.impact_notional, "borrow_bps": c.borrow_bps}}

    @classmethod
    def from_dict(cls, d: dict, thresholds: GateThresholds | None = None) -> "ValidationSettings":
        return cls(train=d["train"], test=d["test"], mode=d["mode"], trials_per_window=d["trials_per_window"],
                   embargo=d["embargo"], seed=d["seed"], pbo_splits=d["pbo_splits"],
                   cost_multipliers=tuple(d["cost_multipliers"]), costs=CostModel(**d["costs"]),
                   thresholds=thresholds or GateThresholds())


@dataclass(frozen=True)
class TrialCount:
    """The trials a DSR deflates by: how many were run (finished) and their Sharpes (annualised)."""

    n: int
    sharpes: np.ndarray

    @classmethod
    def of(cls, study_trials: pd.DataFrame, n_study: int, runs) -> "TrialCount":
        sharpes = [pd.to_numeric(study_trials["sharpe"], errors="coerce").to_numpy(dtype=float)]
        sharpes += [np.asarray(r.trial_sharpes, dtype=float) for r in runs]
        return cls(int(n_study) + sum(int(r.n_trials) for r in runs), np.concatenate(sharpes))


@dataclass
class StrategyValidation:
    strategy_id: str
    spec: StrategySpec
    symbols: list[str]
    oos_returns: pd.Series
    oos_metrics: dict
    windows: pd.DataFrame  # per window: dates, trials, chosen params, train (best trial) and test Sharpe
    dsr: float
    pbo: float
    cost_sensitivity: pd.DataFrame  # per cost multiplier: total return, CAGR, Sharpe of the OOS stream
    regimes: pd.DataFrame
    benchmarks: pd.DataFrame  # per benchmark: OOS-window metrics and the strategy's information ratio
    benchmark_returns: pd.DataFrame  # benchmarks' daily returns over the OOS dates
    positions: pd.DataFrame  # symbol, weight after the last close (the study's best spec)
    walk_forward: WalkForwardRun | None = None
    dsr_trials: int = 0  # N the DSR deflated by
    wf_efficiency: float = math.nan
    param_stability: float = math.nan
    stability: pd.DataFrame = field(default_factory=pd.DataFrame)  # per parameter (reoptimise.parameter_stability)
    information_ratios: dict = field(default_factory=dict)  # benchmark -> information ratio
    failures: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def information_ratio(self) -> float:
        """The lowest information ratio over the benchmarks: the one the benchmark gate reads."""
        values = list(self.information_ratios.values())
        return float(min(values)) if values and all(math.isfinite(v) for v in values) else math.nan


def trial_specs(trials: pd.DataFrame, family: str, level: int, pairs=()) -> list[StrategySpec]:
    """One spec per distinct parameter set the study tried (failed trials with no params skipped)."""
    out, seen = [], set()
    for number, text in zip(trials["trial_number"], trials["params_json"]):
        if text is None or (isinstance(text, float) and math.isnan(text)) or not str(text).strip():
            continue
        try:
            spec = StrategySpec(family, json.loads(text), level, tuple(pairs))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"optimisation_trials: trial {number} of {family} level {level} has params "
                             f"that do not make a valid spec ({exc}); re-run the optimisation") from exc
        if spec.spec_hash() not in seen:
            seen.add(spec.spec_hash())
            out.append(spec)
    return out


def run_walk_forward(spec: StrategySpec, market: MarketArrays, settings: ValidationSettings,
                     storage_url: str | None = None) -> WalkForwardRun:
    """:func:`.reoptimise.reoptimise_walk_forward` with the validation settings."""
    return reoptimise_walk_forward(spec, market, settings.train, settings.test, settings.trials_per_window,
                                   settings.seed, settings.costs, settings.embargo, settings.mode, storage_url)


def stitch(frame: pd.DataFrame, windows: pd.DataFrame) -> pd.Series:
    """Column ``candidate`` of ``frame`` over each window's test dates, concatenated."""
    parts = [frame[w.candidate].loc[w.test_start:w.test_end] for w in windows.itertuples()]
    return pd.concat(parts) if parts else pd.Series(dtype=float)


def oos_metrics(wf: WalkForwardRun) -> dict:
    """Metrics of the walk-forward's stitched stream; trades and holding periods counted per symbol
    account over the test windows (``wf.accounts``)."""
    if wf.windows.empty:
        metrics = compute_metrics(pd.Series([math.nan, math.nan]))
        return {**metrics, "exposure": math.nan, "n_trades": 0.0, "avg_holding_period": math.nan}
    exposure = stitch(wf.book.exposure, wf.windows)
    metrics = compute_metrics(wf.oos_returns.rename("return"), positions=exposure)
    trades = float(np.sum(n_trades(wf.accounts)))
    held = float((wf.accounts.to_numpy() != 0).sum())
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


#: specs simulated together for the PBO streams: the simulation's (T, chunk x symbols) arrays
#: stay ~100-300 MB whatever the study's trial count (all 500 at once peaked at ~12 GB).
TRIAL_CHUNK = 32


def trial_returns(specs: list[StrategySpec], market: MarketArrays, costs: CostModel, indicators=None,
                  chunk: int = TRIAL_CHUNK) -> pd.DataFrame:
    """Each spec's book returns (column k: ``specs[k]``), ``chunk`` specs at a time keeping only the
    returns: the same values as one simulation of all (each book is its own group). The families the
    optimiser's compiled pass knows (``objective.KERNEL_FAMILIES``) go through it (:func:`.fast.portfolio_streams`,
    equal to the vectorbt path: tests/test_report_streams.py), the others through their book engine."""
    from alphatwin_pipelines.optimise.fast import portfolio_streams
    from alphatwin_pipelines.optimise.objective import KERNEL_FAMILIES

    indicators = Indicators(market) if indicators is None else indicators
    parts = []
    for lo in range(0, len(specs), int(chunk)):
        part = specs[lo:lo + int(chunk)]
        if all(s.family in KERNEL_FAMILIES for s in part):
            parts.append(pd.DataFrame(portfolio_streams(part, market, costs, indicators), index=market.dates,
                                      columns=range(lo, lo + len(part))))
        else:
            signals = spec_signals(part, market, indicators)
            parts.append(simulate_portfolios(dict(enumerate(signals, start=lo)), market, costs).returns)
            del signals
    return pd.concat(parts, axis=1) if parts else pd.DataFrame(index=market.dates)


def backtest_overfitting(trial_returns: pd.DataFrame, n_splits: int) -> float:
    """CSCV PBO over the trials' in-sample streams; NaN with < 2 trials or too few sessions."""
    rows = len(trial_returns)
    n_splits = min(int(n_splits), (rows // 2) // 2 * 2)
    if trial_returns.shape[1] < 2 or n_splits < 2:
        return math.nan
    return probability_of_backtest_overfitting(trial_returns.fillna(0.0), n_splits=n_splits).pbo


def cost_sensitivity(wf: WalkForwardRun, market: MarketArrays, settings: ValidationSettings,
                     indicators: Indicators | None = None) -> pd.DataFrame:
    """The walk-forward's own choices (same signals, same windows) re-simulated with every cost multiplied
    (``indicators``: a cache of ``market`` to read). Each window's spec trades from its test start,
    through the optimiser's compiled pass for the families it knows, else the signals are generated once."""
    from alphatwin_pipelines.optimise.fast import portfolio_streams
    from alphatwin_pipelines.optimise.objective import KERNEL_FAMILIES

    rows, signals = [], None
    compiled = bool(wf.specs) and all(s.family in KERNEL_FAMILIES for s in wf.specs)
    for factor in settings.cost_multipliers:
        if not wf.splits:
            m = compute_metrics(pd.Series([math.nan, math.nan]))
        else:
            costs = scale_costs(settings.costs, factor)
            if factor == 1.0:
                returns = wf.book.returns
            elif compiled:
                indicators = Indicators(market) if indicators is None else indicators
                streams = portfolio_streams(wf.specs, market, costs, indicators,
                                            [w.test_positions.start for w in wf.splits])
                returns = pd.DataFrame(streams, index=market.dates, columns=[w.index for w in wf.splits])
            else:
                if signals is None:
                    signals = oos_signals(wf.specs, wf.splits, market, indicators)
                returns = simulate_portfolios(signals, market, costs).returns
            m = compute_metrics(stitch(returns, wf.windows))
        rows.append({"cost_multiplier": float(factor), "total_return": m["total_return"], "cagr": m["cagr"],
                     "sharpe": m["sharpe"], "max_drawdown": m["max_drawdown"]})
    return pd.DataFrame(rows)


def benchmark_table(metrics: dict, oos: pd.Series, bench: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Rows: the walk-forward, then each benchmark over the same sessions with the strategy's IR against it."""
    rows = [{"name": "strategy (walk-forward)", **{k: metrics[k] for k in REPORTED_METRICS},
             "information_ratio": math.nan}]
    ratios = {}
    for name in bench.columns:
        m = compute_metrics(bench[name]) if len(bench) > 1 else compute_metrics(pd.Series([math.nan, math.nan]))
        ratios[name] = information_ratio(oos, bench[name])
        rows.append({"name": name, **{k: m.get(k, math.nan) for k in REPORTED_METRICS},
                     "information_ratio": ratios[name]})
    return pd.DataFrame(rows), ratios


def validate_strategy(row: dict, trials: pd.DataFrame, market: MarketArrays, benchmarks: pd.DataFrame,
                      labels: pd.DataFrame, settings: ValidationSettings, *, walk_forward: WalkForwardRun | None = None,
                      family_trials: TrialCount | None = None, storage_url: str | None = None) -> StrategyValidation:
    """Everything in the module docstring for one ``optimised_strategies`` row on its symbols' ``market``.

    ``walk_forward``: the strategy's :func:`run_walk_forward` when the caller already ran it;
    ``family_trials``: what the DSR counts (default: this strategy's study and windows only).
    """
    spec = StrategySpec.from_json(row["spec_json"])
    wf = walk_forward if walk_forward is not None else run_walk_forward(spec, market, settings, storage_url)
    counted = family_trials or TrialCount.of(trials, int(row["n_trials"]), [wf])
    tried = trial_specs(trials, spec.family, spec.level, spec.pairs)
    indicators = Indicators(market)
    pf = simulate_portfolios({0: spec_signals([spec], market, indicators)[0]}, market, settings.costs)
    dates = pf.returns.index
    in_sample = (dates >= pd.Timestamp(row["start"])) & (dates <= pd.Timestamp(row["end"]))
    dsr = deflated_sharpe(float(row["is_sharpe"]), counted.n, counted.sharpes, pf.returns.loc[in_sample, 0])
    pbo = backtest_overfitting(trial_returns(tried, market, settings.costs, indicators).loc[in_sample],
                               settings.pbo_splits)
    oos = wf.oos_returns.rename("return")
    metrics = oos_metrics(wf)
    bench = benchmarks.reindex(oos.index)
    bench_rows, ratios = benchmark_table(metrics, oos, bench)
    stability, stable = parameter_stability(wf.specs)
    efficiency = walk_forward_efficiency(metrics["sharpe"], wf.windows["train_sharpe"])
    weights = pf.weights[0].iloc[-1]
    positions = pd.DataFrame({"symbol": list(weights.index), "weight": weights.to_numpy(dtype=float)})
    failures = gate_failures(dsr, pbo, metrics["sharpe"], counted.n, settings.thresholds, ratios)
    if wf.windows.empty:
        failures = {"oos_sharpe": (f"out-of-sample Sharpe not measurable: walk-forward impossible: {wf.needed} sessions needed (train {settings.train} + "
                                   f"purge {wf.purge} = lookback {wf.lookback} + holding horizon {wf.horizon} + "
                                   f"embargo {wf.embargo} + 1 test session), {wf.available} loaded: load more "
                                   "history or lower train_sessions"), **{k: v for k, v in failures.items()
                                                                           if k != "oos_sharpe"}}
    costs = cost_sensitivity(wf, market, settings, indicators)
    indicators.clear()  # emptied, not only dropped (reoptimise_walk_forward says why)
    return StrategyValidation(
        strategy_id=str(row["strategy_id"]), spec=spec, symbols=list(market.symbols), oos_returns=oos,
        oos_metrics=metrics, windows=wf.windows, dsr=dsr, pbo=pbo, cost_sensitivity=costs,
        regimes=regime_breakdown(oos, labels), benchmarks=bench_rows, benchmark_returns=bench,
        positions=positions, walk_forward=wf, dsr_trials=counted.n, wf_efficiency=efficiency,
        param_stability=stable, stability=stability, information_ratios=ratios, failures=failures)
