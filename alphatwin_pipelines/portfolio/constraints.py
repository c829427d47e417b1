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

A cap left at its default (``Constraints.with_defaults``) that cannot bind for the strategies at
hand (fewer strategies, sectors or clusters than 1/cap, or caps that conflict) is raised to the least
feasible value by ``relax_defaults`` and reported as a ``Relaxation``; a cap set explicitly is never
moved, so an infeasible one still fails in ``ensure_feasible`` naming the value that would work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

TOLERANCE = 1e-6
# The engine's default caps (one home): no strategy above a quarter, no sector or correlation
# cluster above half of the portfolio.
DEFAULT_CAPS = {"max_weight": 0.25, "sector_cap": 0.5, "cluster_cap": 0.5}
CAPS = tuple(DEFAULT_CAPS)


class InfeasibleConstraintsError(ValueError):
    """No fully invested, long-only portfolio satisfies the caps; the message says which to relax."""


class ConstraintViolationError(RuntimeError):
    """A solver returned weights that break a cap (beyond ``TOLERANCE``)."""


@dataclass(frozen=True)
class Constraints:
    """Caps on the allocation. ``None`` disables a sector or cluster cap.

    ``relaxable`` names the caps holding an engine default rather than a user's value; only those
    may be relaxed when they cannot bind. ``with_defaults`` builds it from a user's partial choice.
    """

    max_weight: float = 1.0
    sector_cap: float | None = None
    cluster_cap: float | None = None
    cluster_threshold: float = 0.7
    relaxable: tuple[str, ...] = ()

    @classmethod
    def with_defaults(cls, max_weight: float | None = None, sector_cap: float | None = None,
                      cluster_cap: float | None = None, cluster_threshold: float | None = None) -> Constraints:
        """The caps given explicitly, and ``DEFAULT_CAPS`` (relaxable) for every one left at ``None``."""
        given = {"max_weight": max_weight, "sector_cap": sector_cap, "cluster_cap": cluster_cap}
        defaulted = tuple(name for name in CAPS if given[name] is None)
        values = {name: DEFAULT_CAPS[name] if name in defaulted else given[name] for name in CAPS}
        threshold = {} if cluster_threshold is None else {"cluster_threshold": cluster_threshold}
        return cls(**values, **threshold, relaxable=defaulted)

    def __post_init__(self):
        for name in ("max_weight", "sector_cap", "cluster_cap"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= 1:
                raise ValueError(f"{name}={value} must lie in (0, 1]; it is a fraction of the portfolio")
        if not -1 < self.cluster_threshold < 1:
            raise ValueError(f"cluster_threshold={self.cluster_threshold} must be a correlation in (-1, 1)")
        unknown = set(self.relaxable) - set(CAPS)
        if unknown:
            raise ValueError(f"relaxable names unknown caps {sorted(unknown)}; choose among {', '.join(CAPS)}")


@dataclass(frozen=True)
class Relaxation:
    """A default cap that could not bind, the value used instead, and why."""

    cap: str
    configured: float
    used: float | None  # None: no cap in (0, 1] can be met, so the default cap is off
    reason: str


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
    if group == "max_weight":  # the cap on every single weight: one row per strategy, no upper bound
        rows, upper, others = np.eye(n), 1.0, np.full(len(system.b), keep_others)
    else:
        mine = system.rows(group)
        rows, upper, others = system.A[mine], system.max_weight, ~mine if keep_others else np.zeros_like(mine)
    # Variables [w_1..w_n, t]: minimise t subject to A_g w - t <= 0 and A_o w <= b_o.
    A_ub = np.vstack([np.hstack([rows, -np.ones((len(rows), 1))]),
                      np.hstack([system.A[others], np.zeros((others.sum(), 1))])])
    b_ub = np.concatenate([np.zeros(len(rows)), system.b[others]])
    result = linprog(c=np.r_[np.zeros(n), 1.0], A_ub=A_ub, b_ub=b_ub, A_eq=np.r_[np.ones(n), 0.0][None, :], b_eq=[1.0],
                     bounds=[(0, upper)] * n + [(None, None)], method="highs")
    return float(result.x[-1]) if result.status == 0 else None


def _feasible(system: LinearSystem) -> bool:
    from scipy.optimize import linprog

    n = len(system.strategies)
    if n * system.max_weight < 1 - TOLERANCE:
        return False
    if not len(system.b):
        return True
    probe = linprog(c=np.zeros(n), A_ub=system.A, b_ub=system.b, A_eq=np.ones((1, n)), b_eq=[1.0],
                    bounds=[(0, system.max_weight)] * n, method="highs")
    return probe.status == 0


def _round_up(value: float) -> float:
    """Up to the next millionth (LP round-off below 1e-9 ignored): readable, and never below the least cap."""
    return math.ceil(value * 1e6 - 1e-3) / 1e6


def relax_defaults(constraints: Constraints, exposure: pd.DataFrame,
                   clusters: pd.Series) -> tuple[Constraints, LinearSystem, tuple[Relaxation, ...]]:
    """The caps and system to allocate under: each relaxable cap that cannot bind raised to the least feasible value.

    First every default that cannot be met on its own (fewer strategies, sectors or clusters than
    1/cap) goes to its own least value; then, while the caps still conflict, each default in turn
    (max_weight, sector_cap, cluster_cap) goes to the least value the other caps allow. Explicit caps
    are kept as given; ``ensure_feasible`` then reports any that remain infeasible.
    """
    n = len(exposure.index)
    caps, found = constraints, {}

    def relax(name: str, least: float | None, reason: str) -> None:
        nonlocal caps
        used = None if least is None or _round_up(least) > 1 else _round_up(least)
        earlier = found.get(name)
        found[name] = Relaxation(name, getattr(constraints, name), used, f"{earlier.reason}; {reason}" if earlier else reason)
        caps = replace(caps, **{name: 1.0 if name == "max_weight" and used is None else used})

    if "max_weight" in caps.relaxable and n * caps.max_weight < 1 - TOLERANCE:
        relax("max_weight", 1 / n, f"only {n} strateg{'y' if n == 1 else 'ies'} passed validation and "
                                   f"{n} × {caps.max_weight} < 1, so no fully invested allocation stays under it")
    system = build_system(caps, exposure, clusters)
    spans = {"sector_cap": f"the strategies hold symbols in {int((exposure.to_numpy() != 0).any(axis=0).sum())} sector(s)",
             "cluster_cap": f"the {n} strategies form {clusters.reindex(list(exposure.index)).nunique()} correlation "
                            f"cluster(s) at cluster_threshold={caps.cluster_threshold}"}
    for name in ("sector_cap", "cluster_cap"):
        if name in caps.relaxable and system.rows(name).any():
            least = _least_cap(system, name, keep_others=False)
            if least is None or least > getattr(caps, name) + TOLERANCE:
                relax(name, least, f"{spans[name]}: no fully invested allocation with max_weight={caps.max_weight} "
                                   f"keeps each within {name}={getattr(caps, name)}")
                system = build_system(caps, exposure, clusters)
    for name in CAPS:
        if _feasible(system):
            break
        current = getattr(caps, name)
        if name in caps.relaxable and current is not None and (name == "max_weight" or system.rows(name).any()):
            least = _least_cap(system, name, keep_others=True)
            if least is not None and least > current + TOLERANCE:
                relax(name, least, f"{name}={current} cannot be met together with the other caps")
                system = build_system(caps, exposure, clusters)
    return caps, system, tuple(found[name] for name in CAPS if name in found)


def ensure_feasible(system: LinearSystem) -> None:
    """Raise ``InfeasibleConstraintsError`` naming the cap to relax and the value that would work."""
    n = len(system.strategies)
    if n * system.max_weight < 1 - TOLERANCE:
        raise InfeasibleConstraintsError(
            f"max_weight={system.max_weight} is infeasible for {n} strategies: {n} × {system.max_weight} < 1. "
            f"Raise max_weight to at least {1 / n:.4f} or let more strategies pass validation.")
    if _feasible(system):
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
