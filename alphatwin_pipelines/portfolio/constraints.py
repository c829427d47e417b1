"""Allocation constraints as one linear system, with feasibility diagnosis and post-solve checks.

Every cap is linear in the strategy weights ``w`` (long-only, fully invested), so the same
system feeds the PyPortfolioOpt solvers, the projection used after HRP / risk parity, the
feasibility LP and the verification that runs after every solve:

* ``w_i <= max_weight``;
* sector caps: ``E @ w <= sector_cap`` where ``E[s, i]`` is strategy *i*'s gross exposure to
  sector *s* (sum of ``|position weight|`` over its symbols in *s*). Gross exposure bounds the
  symbol-level sector sums too (triangle inequality), which ``violations`` checks separately;
* cluster caps: strategies whose return correlation links them (average linkage on
  ``1 - corr`` cut at ``1 - cluster_threshold``) form a cluster whose total weight is capped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TOLERANCE = 1e-6


class InfeasibleConstraintsError(ValueError):
    """No fully invested, long-only portfolio satisfies the caps; the message says which to relax."""


class ConstraintViolationError(RuntimeError):
    """A solver returned weights that break a cap (beyond ``TOLERANCE``)."""


@dataclass(frozen=True)
class Constraints:
    """Caps on the allocation. ``None`` disables a sector or cluster cap."""

    max_weight: float = 1.0
    sector_cap: float | None = None
    cluster_cap: float | None = None
    cluster_threshold: float = 0.7

    def __post_init__(self):
        for name in ("max_weight", "sector_cap", "cluster_cap"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= 1:
                raise ValueError(f"{name}={value} must lie in (0, 1]; it is a fraction of the portfolio")
        if not -1 < self.cluster_threshold < 1:
            raise ValueError(f"cluster_threshold={self.cluster_threshold} must be a correlation in (-1, 1)")


@dataclass(frozen=True)
class LinearSystem:
    """``0 <= w <= max_weight``, ``sum(w) == 1`` and ``A @ w <= b`` (one labelled row per cap)."""

    strategies: tuple[str, ...]
    max_weight: float
    A: np.ndarray
    b: np.ndarray
    labels: tuple[str, ...]
    groups: tuple[str, ...]  # "sector_cap" or "cluster_cap", per row

    def rows(self, group: str) -> np.ndarray:
        return np.array([g == group for g in self.groups], dtype=bool)


def correlation_clusters(corr: pd.DataFrame, threshold: float) -> pd.Series:
    """Cluster id per strategy: average-linkage clusters whose members correlate above ``threshold``.

    Ids are numbered in order of each cluster's first strategy (sorted names), so the same
    matrix always gives the same labels.
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    names = list(corr.index)
    if len(names) == 1:
        return pd.Series([0], index=names, name="cluster")
    distance = np.clip(1.0 - corr.to_numpy(dtype=float), 0.0, 2.0)
    np.fill_diagonal(distance, 0.0)
    raw = fcluster(linkage(squareform(distance, checks=False), method="average"), t=1.0 - threshold, criterion="distance")
    first_seen: dict[int, int] = {}
    ids = [first_seen.setdefault(label, len(first_seen)) for label in raw]
    return pd.Series(ids, index=names, name="cluster")


def build_system(constraints: Constraints, exposure: pd.DataFrame, clusters: pd.Series) -> LinearSystem:
    """``exposure``: strategies × sectors gross exposures; ``clusters``: cluster id per strategy."""
    strategies = tuple(exposure.index)
    rows, bounds, labels, groups = [], [], [], []
    if constraints.sector_cap is not None:
        for sector in exposure.columns:
            column = exposure[sector].to_numpy(dtype=float)
            if column.any():
                rows.append(column)
                bounds.append(constraints.sector_cap)
                labels.append(f"sector {sector!r}")
                groups.append("sector_cap")
    if constraints.cluster_cap is not None:
        members = clusters.reindex(list(strategies))
        for cluster in sorted(members.unique()):
            in_cluster = (members == cluster).to_numpy(dtype=float)
            if in_cluster.sum() * constraints.max_weight > constraints.cluster_cap:
                rows.append(in_cluster)
                bounds.append(constraints.cluster_cap)
                names = [s for s, m in zip(strategies, in_cluster) if m]
                labels.append(f"cluster {cluster} ({', '.join(names[:3])}{' …' if len(names) > 3 else ''})")
                groups.append("cluster_cap")
    A = np.vstack(rows) if rows else np.zeros((0, len(strategies)))
    return LinearSystem(strategies, constraints.max_weight, A, np.asarray(bounds, dtype=float), tuple(labels), tuple(groups))


def _least_cap(system: LinearSystem, group: str, keep_others: bool) -> float | None:
    """The smallest common cap on ``group``'s rows for which a portfolio exists (None: none at all)."""
    from scipy.optimize import linprog

    n = len(system.strategies)
    mine = system.rows(group)
    others = ~mine if keep_others else np.zeros_like(mine)
    # Variables [w_1..w_n, t]: minimise t subject to A_g w - t <= 0 and A_o w <= b_o.
    A_ub = np.vstack([np.hstack([system.A[mine], -np.ones((mine.sum(), 1))]),
                      np.hstack([system.A[others], np.zeros((others.sum(), 1))])])
    b_ub = np.concatenate([np.zeros(mine.sum()), system.b[others]])
    result = linprog(c=np.r_[np.zeros(n), 1.0], A_ub=A_ub, b_ub=b_ub, A_eq=np.r_[np.ones(n), 0.0][None, :], b_eq=[1.0],
                     bounds=[(0, system.max_weight)] * n + [(None, None)], method="highs")
    return float(result.x[-1]) if result.status == 0 else None


def ensure_feasible(system: LinearSystem) -> None:
    """Raise ``InfeasibleConstraintsError`` naming the cap to relax and the value that would work."""
    from scipy.optimize import linprog

    n = len(system.strategies)
    if n * system.max_weight < 1 - TOLERANCE:
        raise InfeasibleConstraintsError(
            f"max_weight={system.max_weight} is infeasible for {n} strategies: {n} × {system.max_weight} < 1. "
            f"Raise max_weight to at least {1 / n:.4f} or let more strategies pass validation.")
    if not len(system.b):
        return
    probe = linprog(c=np.zeros(n), A_ub=system.A, b_ub=system.b, A_eq=np.ones((1, n)), b_eq=[1.0],
                    bounds=[(0, system.max_weight)] * n, method="highs")
    if probe.status == 0:
        return
    problems = []
    for group in dict.fromkeys(system.groups):
        cap = float(system.b[system.rows(group)][0])
        alone, joint = _least_cap(system, group, keep_others=False), _least_cap(system, group, keep_others=True)
        if alone is not None and alone > cap + TOLERANCE:
            problems.append(f"{group}={cap} cannot be met even on its own: raise {group} to at least {alone:.4f}")
        elif joint is not None and joint > cap + TOLERANCE:
            problems.append(f"{group}={cap} cannot be met together with the other caps: raise it to at least {joint:.4f}")
    detail = "; ".join(problems) or "the caps conflict with each other"
    raise InfeasibleConstraintsError(
        f"no long-only, fully invested allocation of {n} strategies satisfies the caps (max_weight={system.max_weight}): "
        f"{detail}. Alternatively raise max_weight or cluster_threshold.")


def violations(weights: pd.Series, system: LinearSystem, symbol_sector_sums: pd.Series | None = None,
               sector_cap: float | None = None, tol: float = TOLERANCE) -> list[str]:
    """Every broken rule, as readable sentences (empty when the weights satisfy all of them)."""
    w = weights.reindex(list(system.strategies)).to_numpy(dtype=float)
    found = []
    if np.isnan(w).any():
        found.append(f"{int(np.isnan(w).sum())} strategy weight(s) missing")
        return found
    if abs(w.sum() - 1) > tol:
        found.append(f"weights sum to {w.sum():.9f}, not 1")
    if (w < -tol).any():
        found.append(f"negative weight {w.min():.3g} ({system.strategies[int(w.argmin())]})")
    if (w > system.max_weight + tol).any():
        found.append(f"weight {w.max():.6f} of {system.strategies[int(w.argmax())]} exceeds max_weight={system.max_weight}")
    if len(system.b):
        load = system.A @ w
        for label, value, cap in zip(system.labels, load, system.b):
            if value > cap + tol:
                found.append(f"{label} holds {value:.6f} > cap {cap}")
    if symbol_sector_sums is not None and sector_cap is not None:
        for sector, value in symbol_sector_sums.items():
            if value > sector_cap + tol:
                found.append(f"symbol-level sector {sector!r} sums to {value:.6f} > sector_cap {sector_cap}")
    return found
