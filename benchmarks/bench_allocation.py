"""Allocation across 100 strategies, every method, against two plain peers measured in the same run.

    .venv/bin/python benchmarks/bench_allocation.py [--strategies 100] [--sessions 504] [--repeats 3]

Data: ``factor_model_returns`` (seeded: four factors, strategies loading on one each, idiosyncratic
noise) for ``--strategies`` streams over ``--sessions`` sessions, and four-symbol long baskets over
the synthetic market's universe (its sectors). Caps: max weight 5 %, sector cap 30 %, cluster cap
35 % at correlation 0.5 — all enforced and verified.

Timed, after one warm-up allocation (imports of PyPortfolioOpt, cvxpy, scikit-learn excluded):
``allocate(...)`` end to end (align, Ledoit-Wolf, clusters, feasibility LP, solve, projection,
post-solve checks, symbol weights, regime check, content hash), best of ``--repeats``.

Peers on the same Ledoit-Wolf covariance:
* inverse volatility (``w ∝ 1/σ``, numpy, no caps) — the floor any method pays on top of;
* a naive SciPy SLSQP max Sharpe with the same linear caps (finite-difference-free: analytic
  gradient), the textbook way to do it without a conic solver.

Figures are printed, nothing is asserted: the machine is shared (load average printed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from alphatwin_pipelines.portfolio import METHODS, AllocationPolicy, Constraints, allocate  # noqa: E402
from alphatwin_pipelines.portfolio.constraints import build_system, correlation_clusters  # noqa: E402
from alphatwin_pipelines.portfolio.estimates import (  # noqa: E402
    aligned_returns, annual_mean, latest_positions, sector_exposure, shrunk_covariance, symbol_sectors)
from alphatwin_pipelines.portfolio.synthetic import basket_positions, factor_model_returns  # noqa: E402
from alphatwin_pipelines.sources import make_source  # noqa: E402
from alphatwin_pipelines.universe import resolve_universe  # noqa: E402

CAPS = Constraints(max_weight=0.05, sector_cap=0.30, cluster_cap=0.35, cluster_threshold=0.5)


def best_of(repeats: int, work) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return min(times), result


def slsqp_max_sharpe(cov: np.ndarray, mu: np.ndarray, A: np.ndarray, b: np.ndarray, max_weight: float) -> np.ndarray:
    from scipy.optimize import minimize

    def negative_sharpe(w):
        vol = np.sqrt(w @ cov @ w)
        ret = mu @ w
        grad = -(mu * vol - ret * (cov @ w) / vol) / vol**2
        return -ret / vol, grad

    n = len(mu)
    rules = [{"type": "eq", "fun": lambda w: w.sum() - 1, "jac": lambda w: np.ones(n)}]
    if len(b):
        rules.append({"type": "ineq", "fun": lambda w: b - A @ w, "jac": lambda w: -A})
    result = minimize(negative_sharpe, np.full(n, 1 / n), jac=True, method="SLSQP", bounds=[(0, max_weight)] * n,
                      constraints=rules, options={"maxiter": 500, "ftol": 1e-10})
    return result.x


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategies", type=int, default=100)
    parser.add_argument("--sessions", type=int, default=504)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    returns = factor_model_returns(args.strategies, args.sessions, seed=42)
    ids = sorted(returns["strategy_id"].unique())
    universe = resolve_universe(None, make_source("synthetic", seed=7, n_symbols=500))
    positions = basket_positions(ids, sorted(universe["symbol"]), returns["date"].max(), seed=42)
    import pandas as pd

    passed = pd.DataFrame({"strategy_id": ids, "scanner_partition": "2024-12-31"})
    print(f"{args.strategies} strategies × {args.sessions} sessions, caps {CAPS}; load average {os.getloadavg()}")

    allocate(returns, positions, universe, passed, AllocationPolicy(method="hrp", constraints=CAPS))  # warm-up: imports
    rows = []
    for method in METHODS:
        policy = AllocationPolicy(method=method, constraints=CAPS, target_volatility=0.10)
        seconds, allocation = best_of(args.repeats, lambda: allocate(returns, positions, universe, passed, policy))
        rows.append((method, seconds, allocation))

    matrix = aligned_returns(returns, ids, 60)
    cov_frame = shrunk_covariance(matrix)
    cov, mu = cov_frame.to_numpy(), annual_mean(matrix).to_numpy()
    held = latest_positions(positions, ids)
    system = build_system(CAPS, sector_exposure(held, symbol_sectors(universe, held["symbol"]), ids),
                          correlation_clusters(matrix.corr(), CAPS.cluster_threshold))
    inverse_vol_s, _ = best_of(args.repeats * 20, lambda: (1 / np.sqrt(np.diag(cov))) / (1 / np.sqrt(np.diag(cov))).sum())
    estimate_s, _ = best_of(args.repeats, lambda: shrunk_covariance(aligned_returns(returns, ids, 60)))
    slsqp_s, slsqp_w = best_of(args.repeats, lambda: slsqp_max_sharpe(cov, mu, system.A, system.b, CAPS.max_weight))

    def sharpe(w):
        return float(mu @ w / np.sqrt(w @ cov @ w))

    print(f"\n{'method':<16}{'seconds':>9}{'× SLSQP':>9}{'exp. vol':>10}{'exp. ret':>10}{'Sharpe':>8}"
          f"{'max w':>8}{'shift':>8}  regime")
    for method, seconds, a in rows:
        w = a.weights.reindex(ids).to_numpy()
        print(f"{method:<16}{seconds:>9.3f}{seconds / slsqp_s:>9.2f}{a.expected_volatility:>10.4f}"
              f"{a.expected_return:>10.4f}{sharpe(w):>8.3f}{w.max():>8.4f}{a.projection_shift:>8.4f}  "
              f"{'suggest' if a.regime.rebalance_suggested else 'calm'} ({a.regime.mean_abs_change:.3f})")
    print(f"\npeer: inverse volatility        {inverse_vol_s * 1e3:9.3f} ms (weights only, no caps)")
    print(f"inputs: align + Ledoit-Wolf     {estimate_s:9.3f} s (inside every allocate above)")
    slsqp_ok = np.abs(slsqp_w.sum() - 1) < 1e-6 and (system.A @ slsqp_w <= system.b + 1e-6).all()
    print(f"peer: SciPy SLSQP max Sharpe    {slsqp_s:9.3f} s, Sharpe {sharpe(slsqp_w):.3f}, caps met: {slsqp_ok}")
    ours = dict((m, s) for m, s, _ in rows)["max_sharpe"]
    ours_sharpe = sharpe(dict((m, a) for m, _, a in rows)["max_sharpe"].weights.reindex(ids).to_numpy())
    print(f"ratio max_sharpe (full allocate) / SLSQP (solve only): {ours / slsqp_s:.2f}×; "
          f"Sharpe ours {ours_sharpe:.3f} vs SLSQP {sharpe(slsqp_w):.3f}")
    print(f"slowest method: {max(rows, key=lambda r: r[1])[0]} {max(r[1] for r in rows):.3f} s (target ≤ 60 s)")


if __name__ == "__main__":
    main()
