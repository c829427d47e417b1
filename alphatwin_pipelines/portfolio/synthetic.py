"""Seeded stand-ins for the validation stage's tables, for allocation tests and benchmarks.

Strategy returns follow a factor model (a few common factors, strategies loading on one of them
in groups, plus idiosyncratic noise), which gives the correlation clusters that real strategy
books show; positions are long-only baskets over the given universe's symbols.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from alphatwin_pipelines.calendar import previous_sessions
from alphatwin_pipelines.schema import frame_to_arrow
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import STRATEGY_POSITIONS, STRATEGY_RETURNS, UNIVERSE, VALIDATION


def strategy_ids(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return sorted(f"{value:016x}" for value in rng.integers(0, 2**63, size=n, dtype=np.int64))


def factor_model_returns(n_strategies: int, n_sessions: int, *, end="2024-12-31", seed: int = 0,
                         n_factors: int = 4, factor_vol: float = 0.008, idio_vol: float = 0.006) -> pd.DataFrame:
    """Long ``date, strategy_id, return``: each strategy loads on one factor (so groups correlate)."""
    rng = np.random.default_rng(seed)
    dates = previous_sessions(pd.Timestamp(end) + pd.Timedelta(days=1), n_sessions)
    factors = rng.normal(0.0, factor_vol, size=(n_sessions, n_factors))
    group = rng.integers(0, n_factors, size=n_strategies)
    loading = rng.uniform(0.5, 1.5, size=n_strategies)
    drift = rng.normal(0.0003, 0.0003, size=n_strategies)
    noise = rng.normal(0.0, 1.0, size=(n_sessions, n_strategies)) * rng.uniform(0.5, 2.0, size=n_strategies) * idio_vol
    values = factors[:, group] * loading + noise + drift
    ids = strategy_ids(n_strategies, seed)
    wide = pd.DataFrame(values, index=pd.DatetimeIndex(dates, name="date"), columns=ids)
    long = wide.melt(ignore_index=False, var_name="strategy_id", value_name="return").reset_index()
    return long.sort_values(["date", "strategy_id"], kind="stable").reset_index(drop=True)


def basket_positions(ids: list[str], symbols: list[str], date, *, seed: int = 0, per_strategy: int = 4) -> pd.DataFrame:
    """``strategy_id, symbol, date, weight``: equal-weight long baskets of ``per_strategy`` symbols."""
    rng = np.random.default_rng(seed)
    rows = []
    for strategy in ids:
        for symbol in sorted(rng.choice(symbols, size=per_strategy, replace=False)):
            rows.append({"strategy_id": strategy, "symbol": symbol, "date": pd.Timestamp(date), "weight": 1.0 / per_strategy})
    return pd.DataFrame(rows)


def validation_rows(ids: list[str], passed: list[bool], scanner_partition: str = "2024-12-31") -> pd.DataFrame:
    """``validation_reports`` rows in the contract's columns (metrics are placeholders, not results)."""
    n = len(ids)
    return pd.DataFrame({
        "strategy_id": ids, "family": "trend", "level": 1, "complexity": 1.0,
        "spec_json": [json.dumps({"family": "trend", "id": s}) for s in ids], "symbols_json": "[]",
        "n_trials": 50, "is_sharpe": 1.0, "oos_sharpe": 0.8, "oos_sortino": 1.0, "oos_cagr": 0.1,
        "oos_max_drawdown": -0.1, "dsr": 0.97, "pbo": 0.2, "passed": passed,
        "reasons": ["" if ok else "dsr below 0.95" for ok in passed], "report_path": "",
        "scanner_partition": [scanner_partition] * n, "record_json": "{}"})


def write_inputs(store: TableStore, universe: pd.DataFrame, *, n_strategies: int = 60, n_sessions: int = 252,
                 pass_fraction: float = 0.8, seed: int = 0) -> list[str]:
    """Write universe, validation_reports, strategy_returns and strategy_positions; return the passed ids."""
    returns = factor_model_returns(n_strategies, n_sessions, seed=seed)
    ids = sorted(returns["strategy_id"].unique())
    passed = list(np.random.default_rng(seed + 1).random(n_strategies) < pass_fraction)
    positions = basket_positions(ids, sorted(universe["symbol"]), returns["date"].max(), seed=seed)
    with store.batch():
        store.write_table(UNIVERSE, frame_to_arrow(universe))
        store.write_table(VALIDATION, frame_to_arrow(validation_rows(ids, passed)))
        store.write_table(STRATEGY_RETURNS, frame_to_arrow(returns))
        store.write_table(STRATEGY_POSITIONS, frame_to_arrow(positions))
    return [s for s, ok in zip(ids, passed) if ok]
