"""One allocation across validated strategies: estimates, caps, weights, checks and a content version.

The version is a hash of everything that determines the weights (the aligned return matrix,
the positions and sectors used, the scanner partitions, the method and every cap), so the same
inputs and policy always give the same ``allocation_version`` and the execution sensor can key
runs on it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from alphatwin_pipelines.portfolio.brake import BrakeBacktest, DrawdownBrake, allocation_returns, backtest_brake
from alphatwin_pipelines.portfolio.constraints import (
    ConstraintViolationError,
    Constraints,
    LinearSystem,
    Relaxation,
    correlation_clusters,
    ensure_feasible,
    relax_defaults,
    violations,
)
from alphatwin_pipelines.portfolio.estimates import (
    annual_mean,
    aligned_returns,
    latest_positions,
    risk_contributions,
    sector_exposure,
    shrunk_covariance,
    symbol_sectors,
    symbol_weights,
)
from alphatwin_pipelines.portfolio.methods import solve
from alphatwin_pipelines.portfolio.regime import RegimeCheck, correlation_regime

ALLOCATION_SCHEMA = pa.schema([
    pa.field("allocation_version", pa.string()),
    pa.field("as_of", pa.timestamp("ns")),
    pa.field("method", pa.string()),
    pa.field("kind", pa.string()),
    pa.field("name", pa.string()),
    pa.field("weight", pa.float64()),
    pa.field("sector", pa.string()),
    pa.field("risk_contribution", pa.float64()),
    pa.field("spec_hashes", pa.string()),
    pa.field("scanner_partition", pa.string()),
    pa.field("cluster", pa.int64()),
    pa.field("expected_return", pa.float64()),
    pa.field("expected_volatility", pa.float64()),
    # The drawdown brake's scale for the next session (1.0 without a brake); symbol weights include it.
    pa.field("exposure_scale", pa.float64()),
])


@dataclass(frozen=True)
class AllocationPolicy:
    """How to allocate: the method, its caps, and the history and regime settings.

    The caps default to ``DEFAULT_CAPS``, relaxed where they cannot bind (see ``relax_defaults``).
    """

    method: str = "hrp"
    constraints: Constraints = Constraints.with_defaults()
    target_volatility: float | None = None
    risk_free_rate: float = 0.0
    min_history: int = 60
    regime_window: int = 63
    regime_threshold: float = 0.25
    brake: DrawdownBrake | None = None  # off by default: weights are fully invested


@dataclass(frozen=True)
class Allocation:
    version: str
    as_of: pd.Timestamp
    policy: AllocationPolicy
    weights: pd.Series  # per strategy, sorted by strategy_id
    risk_contribution: pd.Series  # per strategy; sums to expected_volatility
    symbols: pd.DataFrame  # symbol, weight, sector, spec_hashes, scanner_partition
    clusters: pd.Series
    sector_exposure: pd.DataFrame  # strategies × sectors gross exposure
    system: LinearSystem
    caps: Constraints  # the caps used: the policy's, with any relaxed defaults
    relaxations: tuple[Relaxation, ...]  # the default caps that could not bind, and why
    expected_return: float
    expected_volatility: float
    projection_shift: float
    regime: RegimeCheck
    partitions: pd.Series
    brake: BrakeBacktest | None = None  # the brake's backtest over the return matrix, when configured

    @property
    def exposure_scale(self) -> float:
        return 1.0 if self.brake is None else self.brake.current_scale

    def symbol_sector_sums(self) -> pd.Series:
        return self.symbols.assign(gross=self.symbols["weight"].abs()).groupby("sector")["gross"].sum()

    def violations(self, weights: pd.Series | None = None) -> list[str]:
        """Broken caps for ``weights`` (default: this allocation's), including the symbol-level sector sums."""
        return violations(self.weights if weights is None else weights, self.system, self.symbol_sector_sums(),
                          self.caps.sector_cap)

    def frame(self) -> pd.DataFrame:
        """The ``portfolio_allocations`` rows: one per strategy, then one per held symbol."""
        common = {"allocation_version": self.version, "as_of": self.as_of, "method": self.policy.method,
                  "expected_return": self.expected_return, "expected_volatility": self.expected_volatility,
                  "exposure_scale": self.exposure_scale}
        strategies = pd.DataFrame({
            "kind": "strategy", "name": self.weights.index, "weight": self.weights.to_numpy(), "sector": None,
            "risk_contribution": self.risk_contribution.reindex(self.weights.index).to_numpy(),
            "spec_hashes": [json.dumps([s]) for s in self.weights.index],
            "scanner_partition": self.partitions.reindex(self.weights.index).astype(str).to_numpy(),
            "cluster": self.clusters.reindex(self.weights.index).to_numpy(dtype=np.int64)})
        symbols = pd.DataFrame({
            "kind": "symbol", "name": self.symbols["symbol"], "weight": self.symbols["weight"],
            "sector": self.symbols["sector"], "risk_contribution": np.nan,
            "spec_hashes": [json.dumps(list(h)) for h in self.symbols["spec_hashes"]],
            "scanner_partition": self.symbols["scanner_partition"], "cluster": None})
        rows = pd.concat([strategies, symbols], ignore_index=True).assign(**common)
        return rows[ALLOCATION_SCHEMA.names]

    def arrow(self) -> pa.Table:
        return allocation_arrow(self.frame())


def allocation_arrow(frame: pd.DataFrame) -> pa.Table:
    """``portfolio_allocations`` rows as Arrow in ``ALLOCATION_SCHEMA`` (missing values as nulls)."""
    return pa.Table.from_pydict({f.name: frame[f.name].astype(object).where(frame[f.name].notna(), None).tolist()
                                 for f in ALLOCATION_SCHEMA}, schema=ALLOCATION_SCHEMA)


def allocate(returns: pd.DataFrame, positions: pd.DataFrame, universe: pd.DataFrame, passed: pd.DataFrame,
             policy: AllocationPolicy = AllocationPolicy()) -> Allocation:
    """Allocate across ``passed`` (strategy_id, scanner_partition) using the contract tables' frames.

    Inputs are read, never modified.
    """
    strategies = sorted(passed["strategy_id"].astype(str).unique())
    partitions = passed.drop_duplicates("strategy_id").set_index("strategy_id")["scanner_partition"].astype(str)
    matrix = aligned_returns(returns, strategies, policy.min_history)
    held = latest_positions(positions, strategies)
    # The decision session: the newest information used, returns or positions (the execution sizes
    # orders at its close). Nothing after it is read.
    last_return = pd.Timestamp(matrix.index[-1])
    as_of = max(last_return, pd.Timestamp(held["date"].max())) if len(held) else last_return
    sectors = symbol_sectors(universe, held["symbol"])
    exposure = sector_exposure(held, sectors, strategies)
    cov = shrunk_covariance(matrix)
    mu = annual_mean(matrix)
    clusters = correlation_clusters(matrix.corr(), policy.constraints.cluster_threshold)
    caps, system, relaxations = relax_defaults(policy.constraints, exposure, clusters)
    ensure_feasible(system)
    solution = solve(policy.method, cov, mu, system, target_volatility=policy.target_volatility,
                     risk_free_rate=policy.risk_free_rate)
    weights = _tidy(solution.weights.reindex(strategies))
    contributions = risk_contributions(weights, cov)
    brake = None if policy.brake is None else backtest_brake(allocation_returns(matrix, weights), policy.brake)
    symbols = symbol_weights(weights, held, sectors, partitions)
    if brake is not None:  # the strategy mix stays whole; the book held is scaled down, the rest is cash
        symbols = symbols.assign(weight=symbols["weight"] * brake.current_scale)
    allocation = Allocation(
        version=allocation_version(matrix, held, sectors, partitions.reindex(strategies), policy),
        as_of=as_of, policy=policy, weights=weights, risk_contribution=contributions,
        symbols=symbols, clusters=clusters, sector_exposure=exposure,
        system=system, caps=caps, relaxations=relaxations, expected_return=float(mu.reindex(strategies) @ weights), expected_volatility=float(contributions.sum()),
        projection_shift=solution.projection_shift,
        regime=correlation_regime(matrix, policy.regime_window, policy.regime_threshold), partitions=partitions,
        brake=brake)
    broken = allocation.violations()
    if broken:
        raise ConstraintViolationError(f"{policy.method} returned weights that break the caps: {'; '.join(broken)}")
    return allocation


def _tidy(weights: pd.Series) -> pd.Series:
    """Solver noise (|w| < 1e-10) to exact zero, then renormalised to sum to one."""
    cleaned = weights.where(weights.abs() >= 1e-10, 0.0).clip(lower=0.0)
    return (cleaned / cleaned.sum()).rename("weight")


def allocation_version(matrix: pd.DataFrame, held: pd.DataFrame, sectors: pd.Series, partitions: pd.Series,
                       policy: AllocationPolicy) -> str:
    """A 20-hex content hash of the allocation's inputs, method and caps."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"strategies": list(matrix.columns), "dates": [f"{d:%Y-%m-%d}" for d in matrix.index],
                              "policy": asdict(policy), "sectors": sectors.to_dict(),
                              "partitions": partitions.to_dict()}, sort_keys=True, default=str).encode())
    digest.update(np.ascontiguousarray(matrix.to_numpy(dtype=np.float64)).tobytes())
    digest.update(held[["strategy_id", "symbol", "date"]].to_csv(index=False).encode())
    digest.update(np.ascontiguousarray(held["weight"].to_numpy(dtype=np.float64)).tobytes())
    return digest.hexdigest()[:20]
