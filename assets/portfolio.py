"""Portfolio stage: one versioned allocation across the strategies that passed validation.

The paper-execution sensor keys its runs on the ``allocation_version`` in this asset's
metadata and reads the immutable ``portfolio_allocations/<version>.parquet``; the blocking
checks below stop any downstream step from acting on weights that break the caps. A default cap
that could not bind (the engine relaxed it) is a WARN check, not a failure: the weights are valid
under the caps actually used, which the metadata lists. When no strategy passed, the allocation is
all cash (execution closes every position) and the WARN check ``strategies_passed`` fails with why.
"""

import base64
import io

import dagster as dg
import pandas as pd

from alphatwin_pipelines.portfolio import (
    CASH,
    AllocationError,
    AllocationInputError,
    AllocationPolicy,
    CashAllocation,
    Constraints,
    DrawdownBrake,
    InfeasibleConstraintsError,
    violations,
)
from alphatwin_pipelines.profiling import measure
from alphatwin_pipelines.reporting import markdown_table
from alphatwin_pipelines.stages.portfolio import allocate_portfolio
from alphatwin_pipelines.tables import ALLOCATIONS, VALIDATION
from assets.locations import location
from assets.resources import StorageResource

CHECK_WEIGHTS_VALID = "weights_valid"
CHECK_VERSION_STORED = "version_stored_immutably"
CHECK_CAPS_BIND = "caps_bind"
CHECK_STRATEGIES_PASSED = "strategies_passed"

_CHECKS = {
    CHECK_WEIGHTS_VALID: "Stored strategy weights sum to 1, are non-negative and respect max weight, sector and cluster caps.",
    CHECK_VERSION_STORED: "portfolio_allocations/<allocation_version>.parquet exists and holds exactly the latest rows.",
}
_CAPS_TEXT = "Every default cap can bind for these strategies (none had to be relaxed to the least feasible value)."
_PASSED_TEXT = "At least one strategy passed validation; otherwise the allocation is all cash and this says why."
_NOT_RETRYABLE = (InfeasibleConstraintsError, AllocationError, AllocationInputError,
                  FileNotFoundError, ValueError)


class PortfolioConfig(dg.Config):
    """Method and caps. HRP by default: with dozens of strategies and short out-of-sample histories,
    mean estimates are mostly noise (max Sharpe amplifies it) and HRP needs neither means nor an
    inverted covariance, so its weights stay stable from one week to the next."""

    method: str = "hrp"  # hrp | risk_parity | min_volatility | max_sharpe | efficient_risk
    # Caps left unset take the engine's defaults (DEFAULT_CAPS), relaxed if they cannot bind; a value
    # set here is kept, and fails the run if infeasible. 1.0 leaves a cap without effect.
    max_weight: float | None = None
    sector_cap: float | None = None
    cluster_cap: float | None = None
    cluster_threshold: float | None = None
    target_volatility: float = 0.10  # annualised, efficient_risk only
    risk_free_rate: float = 0.0
    min_history: int = 60
    regime_window: int = 63
    regime_threshold: float = 0.25
    # Drawdown brake (off unless a limit is set): exposure falls linearly from full at drawdown_limit
    # to drawdown_floor at drawdown_limit + drawdown_span (default: twice the limit).
    drawdown_limit: float | None = None
    drawdown_floor: float = 0.25
    drawdown_span: float | None = None

    def policy(self) -> AllocationPolicy:
        caps = Constraints.with_defaults(max_weight=self.max_weight, sector_cap=self.sector_cap,
                                         cluster_cap=self.cluster_cap, cluster_threshold=self.cluster_threshold)
        brake = None if self.drawdown_limit is None else DrawdownBrake(self.drawdown_limit, self.drawdown_floor,
                                                                       self.drawdown_span)
        return AllocationPolicy(method=self.method, constraints=caps, target_volatility=self.target_volatility,
                                risk_free_rate=self.risk_free_rate, min_history=self.min_history,
                                regime_window=self.regime_window, regime_threshold=self.regime_threshold,
                                brake=brake)


@dg.asset(
    name=ALLOCATIONS, deps=[VALIDATION], group_name="portfolio", kinds={"parquet", "pypfopt"},
    check_specs=[*(dg.AssetCheckSpec(name, asset=ALLOCATIONS, description=text, blocking=True) for name, text in _CHECKS.items()),
                 dg.AssetCheckSpec(CHECK_CAPS_BIND, asset=ALLOCATIONS, description=_CAPS_TEXT, blocking=False),
                 dg.AssetCheckSpec(CHECK_STRATEGIES_PASSED, asset=ALLOCATIONS, description=_PASSED_TEXT, blocking=False)],
)
def portfolio_allocations(context: dg.AssetExecutionContext, config: PortfolioConfig, storage: StorageResource):
    """Weights per validated strategy and per symbol (strategy weight × its positions), with risk contributions;
    all cash, with the reasons, when no strategy passed."""
    store = storage.store()
    with measure() as cost:
        try:
            run = allocate_portfolio(store, config.policy())
        except _NOT_RETRYABLE as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        from alphatwin_pipelines.portfolio.plot import write_allocation_plot  # matplotlib: only when materialising

        plot = write_allocation_plot(run.allocation, store.data_dir / "reports" / "allocation.png")
    a = run.allocation
    cash = isinstance(a, CashAllocation)
    image = base64.b64encode(plot.read_bytes()).decode()
    yield dg.MaterializeResult(metadata={
        "allocation_version": a.version,
        "as_of": f"{a.as_of:%Y-%m-%d}",  # the decision session
        **({"cash": f"cash: no strategy passed ({a.reason})", "method": CASH, "strategies": 0} if cash
           else _weights_metadata(a)),
        "expected_annual_return": round(a.expected_return, 6),
        "expected_annual_volatility": round(a.expected_volatility, 6),
        "exposure_scale": round(a.exposure_scale, 6),
        "rebalance_suggested": a.regime.rebalance_suggested,
        "regime": a.regime.reason,
        "plot": location(plot),
        "plot_preview": dg.MetadataValue.md(f"![allocation](data:image/png;base64,{image})"),
        "path": location(run.version_path),
        "dagster/row_count": 1 if cash else len(a.weights) + len(a.symbols),
        **cost.as_metadata()})
    yield from _checks(run)


def _weights_metadata(a) -> dict:
    strategies = pd.DataFrame({"strategy_id": a.weights.index, "weight": a.weights.round(4).to_numpy(),
                               "risk_contribution": a.risk_contribution.round(5).to_numpy(),
                               "cluster": a.clusters.reindex(a.weights.index).to_numpy()}).sort_values("weight", ascending=False)
    symbols = a.symbols.assign(weight=a.symbols["weight"].round(4), spec_hashes=a.symbols["spec_hashes"].map(len))
    return {
        "method": a.policy.method,
        "strategies": len(a.weights),
        "projection_shift": round(a.projection_shift, 6),
        "caps_used": {"max_weight": a.caps.max_weight, "sector_cap": a.caps.sector_cap, "cluster_cap": a.caps.cluster_cap},
        "caps_relaxed": dg.MetadataValue.md(_relaxation_table(a.relaxations)),
        "strategy_weights": dg.MetadataValue.md(markdown_table(strategies)),
        "symbol_weights": dg.MetadataValue.md(markdown_table(symbols.rename(columns={"spec_hashes": "strategies"}))),
        "drawdown_brake": dg.MetadataValue.md(_brake_table(a))}


def _brake_table(allocation) -> str:
    """The brake's backtest over the strategies' out-of-sample returns, with and without it."""
    brake = allocation.brake
    if brake is None:
        return "No drawdown brake configured (set `drawdown_limit` to backtest one)."
    settings = allocation.policy.brake
    head = (f"Brake: limit {settings.limit:.1%}, floor {settings.floor:.0%}; the allocation's drawdown at the last "
            f"close is {brake.drawdown:.2%}, so the next session holds {brake.current_scale:.0%} of the book.\n\n")
    return head + markdown_table(brake.summary().round(4).reset_index(names="book"))


def _relaxation_table(relaxations) -> str:
    return markdown_table(pd.DataFrame([{"cap": r.cap, "configured": r.configured, "used": "off" if r.used is None else r.used,
                                         "why": r.reason} for r in relaxations], columns=["cap", "configured", "used", "why"]))


def _weights_broken(run, stored: pd.DataFrame) -> list[str]:
    """Broken rules of the stored rows: the caps for an allocation, exactly one cash row of weight 1 for cash."""
    if isinstance(run.allocation, CashAllocation):
        rows = stored[["kind", "name", "weight"]].to_records(index=False).tolist()
        return [] if rows == [(CASH, CASH, 1.0)] else [f"a cash allocation holds exactly one row (cash, cash, 1.0), found {rows}"]
    a = run.allocation
    held = stored[stored["kind"] == "symbol"]
    sector_sums = held["weight"].abs().groupby(held["sector"]).sum()
    return violations(stored[stored["kind"] == "strategy"].set_index("name")["weight"], a.system, sector_sums,
                      a.caps.sector_cap)


def _checks(run):
    stored = pd.read_parquet(io.BytesIO(run.version_path.read_bytes()))  # local or on the object store
    weights = stored[stored["kind"] != "symbol"]["weight"]  # the strategy rows, or the cash row
    broken = _weights_broken(run, stored)
    yield dg.AssetCheckResult(
        check_name=CHECK_WEIGHTS_VALID, asset_key=ALLOCATIONS, passed=not broken,
        description="; ".join(broken) or "weights sum to 1 and respect every cap",
        metadata={"weight_sum": float(weights.sum()), "max_weight": float(weights.max()),
                  "violations": dg.MetadataValue.md(markdown_table(pd.DataFrame({"violation": broken})))})
    same = run.version_path.read_bytes() == run.latest_path.read_bytes()
    yield dg.AssetCheckResult(
        check_name=CHECK_VERSION_STORED, asset_key=ALLOCATIONS, passed=same,
        description="the immutable version file matches the latest allocation" if same else
        f"{run.version_path} differs from {run.latest_path}: a version's content changed; investigate before executing",
        metadata={"version_path": location(run.version_path)})
    a = run.allocation
    cash = isinstance(a, CashAllocation)
    relaxed = () if cash else a.relaxations
    yield dg.AssetCheckResult(
        check_name=CHECK_CAPS_BIND, asset_key=ALLOCATIONS, passed=not relaxed, severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(f"{r.cap} relaxed from its default {r.configured} to "
                              f"{'off' if r.used is None else r.used}: {r.reason}" for r in relaxed)
        or ("no strategy to cap: the book is in cash" if cash else "every default cap can bind"),
        metadata={"relaxed": dg.MetadataValue.md(_relaxation_table(relaxed)), "relaxed_caps": [r.cap for r in relaxed]})
    yield dg.AssetCheckResult(
        check_name=CHECK_STRATEGIES_PASSED, asset_key=ALLOCATIONS, passed=not cash, severity=dg.AssetCheckSeverity.WARN,
        description=f"cash: {a.reason}" if cash else f"{len(a.weights)} strategies passed validation and are allocated",
        metadata={"strategies": 0 if cash else len(a.weights)})
