"""Allocation across validated strategies: methods, caps, correlation regime and versioned output.

``allocate(returns, positions, universe, passed, AllocationPolicy(...))`` returns an
``Allocation`` whose ``frame()`` / ``arrow()`` are the ``portfolio_allocations`` rows; when no strategy
passed, ``cash_allocation(reports)`` is the all-cash ``CashAllocation`` in the same rows.
"""

from alphatwin_pipelines.portfolio.allocate import ALLOCATION_SCHEMA, Allocation, AllocationPolicy, allocate, allocation_version
from alphatwin_pipelines.portfolio.brake import BrakeBacktest, DrawdownBrake, allocation_returns, backtest_brake
from alphatwin_pipelines.portfolio.cash import CASH, CashAllocation, cash_allocation, why_none_passed
from alphatwin_pipelines.portfolio.constraints import (
    DEFAULT_CAPS,
    TOLERANCE,
    ConstraintViolationError,
    Constraints,
    InfeasibleConstraintsError,
    Relaxation,
    build_system,
    correlation_clusters,
    ensure_feasible,
    relax_defaults,
    violations,
)
from alphatwin_pipelines.portfolio.estimates import AllocationInputError, risk_contributions
from alphatwin_pipelines.portfolio.methods import METHODS, AllocationError, equal_risk_contribution, solve
from alphatwin_pipelines.portfolio.regime import RegimeCheck, correlation_regime

__all__ = [
    "ALLOCATION_SCHEMA", "BrakeBacktest", "CASH", "CashAllocation", "cash_allocation", "why_none_passed", "DEFAULT_CAPS", "DrawdownBrake", "allocation_returns", "backtest_brake", "METHODS", "TOLERANCE", "Allocation", "AllocationError", "AllocationInputError",
    "AllocationPolicy", "ConstraintViolationError", "Constraints", "InfeasibleConstraintsError", "RegimeCheck", "Relaxation",
    "allocate", "allocation_version", "build_system", "correlation_clusters", "correlation_regime", "ensure_feasible",
    "equal_risk_contribution", "relax_defaults", "risk_contributions", "solve", "violations",
]
