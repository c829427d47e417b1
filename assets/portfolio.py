"""Portfolio stage: one versioned allocation across the strategies that passed validation.

The paper-execution sensor keys its runs on the ``allocation_version`` in this asset's
metadata and reads the immutable ``portfolio_allocations/<version>.parquet``; the blocking
checks below stop any downstream step from acting on weights that break the caps.
"""

import base64

import dagster as dg
import pandas as pd

from alphatwin_pipelines.portfolio import (
    AllocationError,
    AllocationInputError,
    AllocationPolicy,
    Constraints,
    InfeasibleConstraintsError,
    violations,
)
from alphatwin_pipelines.profiling import measure
from alphatwin_pipelines.reporting import markdown_table
from alphatwin_pipelines.stages.portfolio import NoPassingStrategiesError, allocate_portfolio
from alphatwin_pipelines.tables import ALLOCATIONS, VALIDATION
from assets.resources import StorageResource

CHECK_WEIGHTS_VALID = "weights_valid"
CHECK_VERSION_STORED = "version_stored_immutably"

_CHECKS = {
    CHECK_WEIGHTS_VALID: "Stored strategy weights sum to 1, are non-negative and respect max weight, sector and cluster caps.",
    CHECK_VERSION_STORED: "portfolio_allocations/<allocation_version>.parquet exists and holds exactly the latest rows.",
}
_NOT_RETRYABLE = (NoPassingStrategiesError, InfeasibleConstraintsError, AllocationError, AllocationInputError,
                  FileNotFoundError, ValueError)


class PortfolioConfig(dg.Config):
    """Method and caps. HRP by default: with dozens of strategies and short out-of-sample histories,
    mean estimates are mostly noise (max Sharpe amplifies it) and HRP needs neither means nor an
    inverted covariance, so its weights stay stable from one week to the next."""

    method: str = "hrp"  # hrp | risk_parity | min_volatility | max_sharpe | efficient_risk
    max_weight: float = 0.25
    sector_cap: float | None = 0.5
    cluster_cap: float | None = 0.5
    cluster_threshold: float = 0.7
    target_volatility: float = 0.10  # annualised, efficient_risk only
    risk_free_rate: float = 0.0
    min_history: int = 60
    regime_window: int = 63
    regime_threshold: float = 0.25

    def policy(self) -> AllocationPolicy:
        caps = Constraints(max_weight=self.max_weight, sector_cap=self.sector_cap, cluster_cap=self.cluster_cap,
                           cluster_threshold=self.cluster_threshold)
        return AllocationPolicy(method=self.method, constraints=caps, target_volatility=self.target_volatility,
                                risk_free_rate=self.risk_free_rate, min_history=self.min_history,
                                regime_window=self.regime_window, regime_threshold=self.regime_threshold)


@dg.asset(
    name=ALLOCATIONS, deps=[VALIDATION], group_name="portfolio", kinds={"parquet", "pypfopt"},
    check_specs=[dg.AssetCheckSpec(name, asset=ALLOCATIONS, description=text, blocking=True) for name, text in _CHECKS.items()],
)
def portfolio_allocations(context: dg.AssetExecutionContext, config: PortfolioConfig, storage: StorageResource):
    """Weights per validated strategy and per symbol (strategy weight × its positions), with risk contributions."""
    store = storage.store()
    with measure() as cost:
        try:
            run = allocate_portfolio(store, config.policy())
        except _NOT_RETRYABLE as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        from alphatwin_pipelines.portfolio.plot import write_allocation_plot  # matplotlib: only when materialising

        plot = write_allocation_plot(run.allocation, store.data_dir / "reports" / "allocation.png")
    a = run.allocation
    strategies = pd.DataFrame({"strategy_id": a.weights.index, "weight": a.weights.round(4).to_numpy(),
                               "risk_contribution": a.risk_contribution.round(5).to_numpy(),
                               "cluster": a.clusters.reindex(a.weights.index).to_numpy()}).sort_values("weight", ascending=False)
    symbols = a.symbols.assign(weight=a.symbols["weight"].round(4), spec_hashes=a.symbols["spec_hashes"].map(len))
    image = base64.b64encode(plot.read_bytes()).decode()
    yield dg.MaterializeResult(metadata={
        "allocation_version": a.version,
        "as_of": f"{a.as_of:%Y-%m-%d}",  # the decision session
        "method": a.policy.method,
        "strategies": len(a.weights),
        "expected_annual_return": round(a.expected_return, 6),
        "expected_annual_volatility": round(a.expected_volatility, 6),
        "projection_shift": round(a.projection_shift, 6),
        "strategy_weights": dg.MetadataValue.md(markdown_table(strategies)),
        "symbol_weights": dg.MetadataValue.md(markdown_table(symbols.rename(columns={"spec_hashes": "strategies"}))),
        "rebalance_suggested": a.regime.rebalance_suggested,
        "regime": a.regime.reason,
        "plot": dg.MetadataValue.path(str(plot)),
        "plot_preview": dg.MetadataValue.md(f"![allocation](data:image/png;base64,{image})"),
        "path": dg.MetadataValue.path(str(run.version_path)),
        "dagster/row_count": len(a.weights) + len(a.symbols),
        **cost.as_metadata()})
    yield from _checks(run)


def _checks(run):
    stored = pd.read_parquet(run.version_path)
    weights = stored[stored["kind"] == "strategy"].set_index("name")["weight"]
    held = stored[stored["kind"] == "symbol"]
    sector_sums = held["weight"].abs().groupby(held["sector"]).sum()
    a = run.allocation
    broken = violations(weights, a.system, sector_sums, a.policy.constraints.sector_cap)
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
        metadata={"version_path": dg.MetadataValue.path(str(run.version_path))})
