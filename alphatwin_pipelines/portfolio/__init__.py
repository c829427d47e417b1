"""Allocation across validated strategies: methods, caps, correlation regime and versioned output.

``allocate(returns, positions, universe, passed, AllocationPolicy(...))`` returns an
``Allocation`` whose ``frame()`` / ``arrow()`` are the ``portfolio_allocations`` rows.
"""

from alphatwin_pipelines.portfolio.allocate import ALLOCATION_SCHEMA, Allocation, AllocationPolicy, allocate, allocation_version
from alphatwin_pipelines.portfolio.constraints import (
    TOLERANCE,
    ConstraintViolationError,
    Constraints,
    InfeasibleConstraintsError,
    build_system,
    correlation_clusters,
    ensure_feasible,
    violations,
)
from alphatwin_pipelines.portfolio.estimates import AllocationInputError, risk_contributions
from alphatwin_pipelines.portfolio.methods import METHODS, AllocationError, equal_risk_contribution, solve
from alphatwin_pipelines.portfolio.regime import RegimeCheck, correlation_regime

__all__ = [
    "ALLOCATION_SCHEMA", "METHODS", "TOLERANCE", "Allocation", "AllocationError", "AllocationInputError",
    "AllocationPolicy", "ConstraintViolationError", "Constraints", "InfeasibleConstraintsError", "RegimeCheck",
    "allocate", "allocation_version", "build_system", "correlation_clusters", "correlation_regime", "ensure_feasible",
    "equal_risk_contribution", "risk_contributions", "solve", "violations",
]
