"""Weighting methods over an annualised covariance (and expected returns where a method uses them).

Mean-variance methods (max Sharpe, min volatility, efficient risk) come from PyPortfolioOpt with
the caps passed into the optimisation. HRP (PyPortfolioOpt) and equal risk contribution (solved
here) have no notion of linear caps, so their weights are moved to the nearest point (least
squares) that satisfies the caps; ``Solution.projection_shift`` reports how far that moved them
(for the mean-variance methods it is only solver round-off).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from alphatwin_pipelines.portfolio.constraints import (
    TOLERANCE,
    InfeasibleConstraintsError,
    LinearSystem,
    violations,
)

METHODS = ("hrp", "risk_parity", "min_volatility", "max_sharpe", "efficient_risk")


class AllocationError(ValueError):
    """A method cannot produce weights for these inputs; the message says what to change."""


@dataclass(frozen=True)
class Solution:
    weights: pd.Series
    projection_shift: float  # L1 distance the projection onto the caps moved the method's weights


def solve(method: str, cov: pd.DataFrame, mu: pd.Series, system: LinearSystem, *,
          target_volatility: float | None = None, risk_free_rate: float = 0.0) -> Solution:
    """Weights per strategy (indexed like ``cov``) for ``method`` under ``system``'s caps."""
    if method not in METHODS:
        raise AllocationError(f"unknown allocation method {method!r}; choose one of {', '.join(METHODS)}")
    names = list(cov.index)
    if method == "hrp":
        return _projected(hrp_weights(cov), system)
    if method == "risk_parity":
        return _projected(pd.Series(equal_risk_contribution(cov.to_numpy(dtype=float)), index=names), system)
    # Max Sharpe solves for w·k and divides by k afterwards, which scales the solver's tolerance: a cap
    # can come back broken by ~1e-5. The projection removes that (its shift is reported, not hidden).
    return _projected(_mean_variance(method, cov, mu, system, target_volatility, risk_free_rate), system)


def hrp_weights(cov: pd.DataFrame) -> pd.Series:
    """López de Prado's hierarchical risk parity (single linkage, as PyPortfolioOpt defaults)."""
    from pypfopt import HRPOpt

    if len(cov) == 1:  # one strategy: nothing to cluster (scipy's linkage refuses an empty distance matrix)
        return pd.Series([1.0], index=cov.index, dtype=float)
    # Positional labels: PyPortfolioOpt's bisection indexes by label, twice as fast on integers as on strings.
    positional = pd.DataFrame(cov.to_numpy(dtype=float))
    weights = HRPOpt(cov_matrix=positional).optimize(linkage_method="single")
    return pd.Series([weights[i] for i in range(len(cov))], index=cov.index, dtype=float)


def equal_risk_contribution(cov: np.ndarray, tol: float = 1e-12, max_sweeps: int = 10_000) -> np.ndarray:
    """Long-only weights whose risk contributions ``w_i (Σw)_i`` are all equal.

    Cyclical coordinate descent on ``½ xᵀΣx − (1/n) Σ ln x_i`` (Griveau-Billion, Richard & Roncalli
    2013): the objective is strictly convex, each coordinate has the closed-form positive root of
    ``Σ_ii x_i² + c_i x_i − 1/n = 0``, and at the optimum ``x_i (Σx)_i = 1/n``; ``w = x / Σx``.
    """
    cov = np.asarray(cov, dtype=float)
    n = len(cov)
    diag = np.diag(cov)
    if (diag <= 0).any():
        raise AllocationError("risk parity needs a positive variance for every strategy (a return stream is constant)")
    budget = 1.0 / n
    x = 1.0 / np.sqrt(diag) / np.sqrt(n)
    sigma_x = cov @ x
    for _ in range(max_sweeps):
        for i in range(n):
            c = sigma_x[i] - diag[i] * x[i]
            new = (-c + np.sqrt(c * c + 4.0 * diag[i] * budget)) / (2.0 * diag[i])
            sigma_x += cov[:, i] * (new - x[i])
            x[i] = new
        if np.max(np.abs(x * sigma_x - budget)) < tol * max(budget, 1.0):
            break
    else:
        raise AllocationError(f"risk parity did not converge in {max_sweeps} sweeps; check the covariance is positive definite")
    return x / x.sum()


def _mean_variance(method, cov, mu, system: LinearSystem, target_volatility, risk_free_rate) -> pd.Series:
    from pypfopt import EfficientFrontier
    from pypfopt.exceptions import OptimizationError

    def frontier():
        ef = EfficientFrontier(mu.reindex(cov.index), cov, weight_bounds=(0, system.max_weight))
        if len(system.b):
            A, b = system.A, system.b
            ef.add_constraint(lambda w: A @ w <= b)
        return ef

    try:
        if method == "min_volatility":
            weights = frontier().min_volatility()
        elif method == "max_sharpe":
            if float(mu.max()) <= risk_free_rate:
                raise AllocationError(
                    f"max_sharpe needs a strategy whose expected return exceeds risk_free_rate={risk_free_rate} "
                    f"(best is {float(mu.max()):.4f}); use hrp, risk_parity or min_volatility instead")
            weights = frontier().max_sharpe(risk_free_rate=risk_free_rate)
        else:
            if target_volatility is None or target_volatility <= 0:
                raise AllocationError("efficient_risk needs target_volatility > 0 (annualised, e.g. 0.10)")
            floor = _volatility(pd.Series(frontier().min_volatility()), cov)
            if target_volatility < floor - TOLERANCE:
                raise AllocationError(
                    f"target_volatility={target_volatility} is below the least volatility the caps allow ({floor:.4f}); "
                    f"raise target_volatility to at least {floor:.4f}")
            weights = frontier().efficient_risk(max(target_volatility, floor + 1e-9))
    except OptimizationError as exc:
        raise AllocationError(f"{method}: the solver found no solution under the caps ({exc}); relax the caps") from exc
    return pd.Series(weights, dtype=float).reindex(cov.index).clip(lower=0.0)


def _volatility(weights: pd.Series, cov: pd.DataFrame) -> float:
    w = weights.reindex(cov.index).to_numpy(dtype=float)
    return float(np.sqrt(w @ cov.to_numpy(dtype=float) @ w))


def _projected(weights: pd.Series, system: LinearSystem) -> Solution:
    """The caps-satisfying weights nearest (least squares) to ``weights``; unchanged when they already comply."""
    if not violations(weights, system, tol=1e-9):
        return Solution(weights, 0.0)
    import cvxpy as cp

    w0 = weights.reindex(list(system.strategies)).to_numpy(dtype=float)
    w = cp.Variable(len(w0))
    rules = [cp.sum(w) == 1, w >= 0, w <= system.max_weight]
    if len(system.b):
        rules.append(system.A @ w <= system.b)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(w - w0)), rules)
    problem.solve(solver=cp.CLARABEL)
    if problem.status not in ("optimal", "optimal_inaccurate"):
        raise InfeasibleConstraintsError(f"no allocation satisfies the caps (solver status {problem.status}); relax them")
    projected = pd.Series(np.clip(w.value, 0.0, None), index=list(system.strategies))
    projected /= projected.sum()
    return Solution(projected, float(np.abs(projected.to_numpy() - w0).sum()))
