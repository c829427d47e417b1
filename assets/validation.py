"""Strategy validation: walk-forward, DSR, PBO, costs, regimes and benchmarks for every optimised strategy.

The four gates are WARN checks on ``validation_reports``. Allocation reads only rows with
``passed`` true; a gate's check fails only when NO strategy clears it. It does not block: a week
the market offers nothing ends in an all-cash allocation (``portfolio_allocations``, which says
why), not a failed run that leaves last week's strategies in the book. When some strategies fail a
gate, the check passes and its metadata names the ones that failed and why.
"""

import dagster as dg
import pandas as pd

from alphatwin_pipelines.profiling import measure
from alphatwin_pipelines.reporting import markdown_table
from alphatwin_pipelines.tables import (
    CLEANED, OPTIMISED, STRATEGY_POSITIONS, STRATEGY_RETURNS, VALIDATION, resolve_stored_path,
)
from assets.locations import link, location
from assets.resources import DaskResource, OptunaResource, StorageResource

DSR_GATE_CHECK = "dsr_gate"
PBO_GATE_CHECK = "pbo_gate"
OOS_SHARPE_GATE_CHECK = "oos_sharpe_gate"
BENCHMARK_GATE_CHECK = "benchmark_gate"
#: check name -> (gate key in the engine, what the gate asks)
GATE_CHECKS = {
    DSR_GATE_CHECK: ("dsr", "Deflated Sharpe Ratio >= min_dsr (default 0.95): the in-sample Sharpe beats the best of N lucky trials"),
    PBO_GATE_CHECK: ("pbo", "Probability of Backtest Overfitting <= max_pbo (default 0.5), by CSCV over the study's trials"),
    OOS_SHARPE_GATE_CHECK: ("oos_sharpe", "Walk-forward out-of-sample Sharpe after costs >= min_oos_sharpe (default 0.5)"),
    BENCHMARK_GATE_CHECK: ("benchmark", "Information ratio (daily log active returns) of the walk-forward against every "
                                        "benchmark of the report > min_information_ratio (default 0)"),
}
_WHEN_IT_FAILS = " Fails (WARN) only when no strategy clears it, and allocation then holds cash; otherwise lists the failures."

_DESCRIPTIONS = {
    VALIDATION: "Per optimised strategy: walk-forward OOS metrics, DSR, PBO, gates with reasons and an HTML report.",
    STRATEGY_RETURNS: "Each strategy's walk-forward out-of-sample daily returns after costs (the input to allocation).",
    STRATEGY_POSITIONS: "Each strategy's target weight per symbol after the last session's close.",
}


class StrategyValidationConfig(dg.Config):
    """Gate thresholds and walk-forward settings (sessions). Each window re-runs the study's optimiser on
    its train slice with ``trials_per_window`` trials; ``mode`` is ``rolling`` or ``anchored``; the purge
    (the spec's longest lookback + holding horizon) is derived, ``embargo_sessions`` follows it."""

    min_dsr: float = 0.95
    max_pbo: float = 0.5
    min_oos_sharpe: float = 0.5
    min_information_ratio: float = 0.0
    train_sessions: int = 252
    test_sessions: int = 63
    mode: str = "rolling"
    trials_per_window: int = 50
    embargo_sessions: int = 5
    seed: int = 0
    pbo_splits: int = 16


def _settings(config: StrategyValidationConfig):
    from alphatwin_pipelines.reports import GateThresholds, ValidationSettings

    return ValidationSettings(train=config.train_sessions, test=config.test_sessions, mode=config.mode,
                              trials_per_window=config.trials_per_window, embargo=config.embargo_sessions,
                              seed=config.seed, pbo_splits=config.pbo_splits,
                              thresholds=GateThresholds(config.min_dsr, config.max_pbo, config.min_oos_sharpe,
                                                        config.min_information_ratio))


@dg.multi_asset(
    specs=[dg.AssetSpec(name, deps=[OPTIMISED, CLEANED], group_name="strategies", kinds={"parquet", "html"},
                        description=text) for name, text in _DESCRIPTIONS.items()],
    check_specs=[dg.AssetCheckSpec(name, asset=VALIDATION, blocking=False, description=text + _WHEN_IT_FAILS)
                 for name, (_, text) in GATE_CHECKS.items()],
)
def validation_reports(context: dg.AssetExecutionContext, config: StrategyValidationConfig, storage: StorageResource,
                       optuna: OptunaResource, dask: DaskResource):
    """With ``ALPHATWIN_DASK_SCHEDULER`` set, each walk-forward and each report is a task on that cluster."""
    from alphatwin_pipelines.stages.validation import REPORTS_DIR, validate_strategies

    store = storage.store()
    with measure() as cost:
        try:
            # the Optuna storage also holds ml_rank's per-window model searches
            with dask.cluster_client() as client:
                run = validate_strategies(store, _settings(config), optuna.url(storage), logger=context.log,
                                          client=client)
        except (FileNotFoundError, ValueError) as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
    reports = run.reports
    pages = {r.strategy_id: resolve_stored_path(store, r.report_path) for r in reports.itertuples()}
    summary = reports.assign(report=[f"[html]({link(pages[s])})" for s in reports["strategy_id"]])[
        ["strategy_id", "family", "level", "oos_sharpe", "dsr", "dsr_n_trials", "pbo", "wf_efficiency",
         "param_stability", "information_ratio", "passed", "reasons", "report"]]
    summary = summary.assign(strategy_id=summary["strategy_id"].str[:12]).round(
        {"oos_sharpe": 2, "dsr": 3, "pbo": 3, "wf_efficiency": 2, "param_stability": 2, "information_ratio": 2})
    yield dg.MaterializeResult(asset_key=VALIDATION, metadata={
        "strategies": len(reports), "passed": int(reports["passed"].sum()),
        "summary": dg.MetadataValue.md(markdown_table(summary, limit=100)),
        "reports_dir": location(store.data_dir / REPORTS_DIR),
        **{f"report {r.family} L{r.level}": dg.MetadataValue.url(link(pages[r.strategy_id]))
           for r in reports[reports["passed"]].itertuples()},
        **cost.as_metadata()})
    yield dg.MaterializeResult(asset_key=STRATEGY_RETURNS, metadata={"rows": len(run.returns)})
    yield dg.MaterializeResult(asset_key=STRATEGY_POSITIONS, metadata={"rows": len(run.positions)})
    for check, (gate, _) in GATE_CHECKS.items():
        failing = [v for v in run.validations if gate in v.failures]
        table = [{"strategy_id": v.strategy_id[:12], "family": v.spec.family, "level": v.spec.level,
                  "reason": v.failures[gate]} for v in failing]
        yield dg.AssetCheckResult(
            check_name=check, asset_key=VALIDATION, passed=len(failing) < len(run.validations),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"failing": len(failing), "clearing": len(run.validations) - len(failing),
                      "failures": dg.MetadataValue.md(markdown_table(pd.DataFrame(table), limit=100))})
