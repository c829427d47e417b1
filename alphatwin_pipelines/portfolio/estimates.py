"""Inputs of an allocation shaped for the solvers: aligned returns, risk estimates, exposures.

Out-of-sample streams are short and numerous (50+ strategies, a few hundred sessions), where a
sample covariance is badly conditioned; Ledoit-Wolf shrinkage towards a scaled identity keeps it
invertible and its eigenvalues sane.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from alphatwin_pipelines.universe import UNKNOWN_SECTOR

TRADING_DAYS = 252


class AllocationInputError(ValueError):
    """The stored inputs cannot support an allocation; the message names the table and the fix."""


def aligned_returns(returns: pd.DataFrame, strategies: list[str], min_history: int) -> pd.DataFrame:
    """Sessions × strategies of daily returns on the sessions every strategy has (sorted both ways)."""
    missing = sorted(set(strategies) - set(returns["strategy_id"]))
    if missing:
        raise AllocationInputError(
            f"strategy_returns has no rows for {len(missing)} passed strategy(ies) ({', '.join(missing[:5])}); "
            "re-materialise validation_reports so strategy_returns covers every strategy it passes")
    rows = returns[returns["strategy_id"].isin(strategies)]
    duplicated = rows.duplicated(["date", "strategy_id"])
    if duplicated.any():
        first = rows[duplicated].iloc[0]
        raise AllocationInputError(
            f"strategy_returns holds {int(duplicated.sum())} duplicate (date, strategy_id) row(s), e.g. "
            f"{first['strategy_id']} on {pd.Timestamp(first['date']):%Y-%m-%d}; each stream needs one return per session")
    wide = rows.pivot(index="date", columns="strategy_id", values="return").sort_index()
    wide = wide.reindex(columns=sorted(strategies)).astype(float)
    common = wide.dropna()
    if len(common) < min_history:
        shortest = wide.notna().sum().sort_values().head(3)
        detail = ", ".join(f"{name}: {count}" for name, count in shortest.items())
        raise AllocationInputError(
            f"only {len(common)} session(s) have a return for every passed strategy; at least {min_history} are needed "
            f"(fewest sessions: {detail}). Lengthen the out-of-sample windows or lower min_history")
    common.columns.name = None
    return common


def shrunk_covariance(matrix: pd.DataFrame) -> pd.DataFrame:
    """Annualised Ledoit-Wolf covariance (PyPortfolioOpt, constant-variance target)."""
    from pypfopt.risk_models import CovarianceShrinkage

    flat = matrix.columns[matrix.std(ddof=1).to_numpy() == 0]
    if len(flat):
        raise AllocationInputError(
            f"strategy return stream(s) {', '.join(map(str, flat[:5]))} are constant over the allocation window; "
            "a strategy that never trades cannot be risk-weighted (fail it in validation)")
    cov = CovarianceShrinkage(matrix, returns_data=True, frequency=TRADING_DAYS).ledoit_wolf()
    return cov.loc[matrix.columns, matrix.columns]


def annual_mean(matrix: pd.DataFrame) -> pd.Series:
    return matrix.mean() * TRADING_DAYS


def latest_positions(positions: pd.DataFrame, strategies: list[str]) -> pd.DataFrame:
    """Each strategy's holdings on its last position date (strategy_id, symbol, date, weight).

    That is what the strategy wants to hold next, known after that session's close.
    """
    rows = positions[positions["strategy_id"].isin(strategies)]
    if rows.empty:
        return pd.DataFrame({"strategy_id": pd.Series(dtype=str), "symbol": pd.Series(dtype=str),
                             "date": pd.Series(dtype="datetime64[ns]"), "weight": pd.Series(dtype=float)})
    rows = rows[rows["date"] == rows.groupby("strategy_id")["date"].transform("max")]
    held = rows.groupby(["strategy_id", "symbol", "date"], as_index=False)["weight"].sum()
    return held[held["weight"] != 0].sort_values(["strategy_id", "symbol"], kind="stable").reset_index(drop=True)


def symbol_sectors(universe: pd.DataFrame, symbols) -> pd.Series:
    """Sector per symbol from the universe table; symbols it does not list count as ``Unknown``."""
    sectors = universe.drop_duplicates("symbol").set_index("symbol")["sector"].astype(object)
    return sectors.reindex(sorted(set(symbols))).fillna(UNKNOWN_SECTOR)


def sector_exposure(held: pd.DataFrame, sectors: pd.Series, strategies: list[str]) -> pd.DataFrame:
    """Strategies × sectors gross exposure (sum of |weight|); strategies holding nothing get zeros."""
    frame = held.assign(sector=held["symbol"].map(sectors), gross=held["weight"].abs())
    table = frame.pivot_table(index="strategy_id", columns="sector", values="gross", aggfunc="sum", fill_value=0.0)
    table = table.reindex(index=strategies, fill_value=0.0).fillna(0.0)
    table = table.reindex(columns=sorted(table.columns))
    table.columns.name = None
    return table.astype(float)


def symbol_weights(strategy_weights: pd.Series, held: pd.DataFrame, sectors: pd.Series,
                   partitions: pd.Series) -> pd.DataFrame:
    """symbol, weight (Σ strategy weight × position weight), sector, spec_hashes, scanner_partition.

    ``spec_hashes`` lists the strategies behind the symbol (those with a non-zero share) and the
    partition is the latest scanner session among them.
    """
    rows = held.assign(share=held["strategy_id"].map(strategy_weights).fillna(0.0) * held["weight"])
    rows = rows[rows["share"] != 0]
    out = []
    for symbol, group in rows.groupby("symbol", sort=True):
        contributors = sorted(group["strategy_id"].unique())
        out.append({"symbol": symbol, "weight": float(group["share"].sum()), "sector": sectors.get(symbol, UNKNOWN_SECTOR),
                    "spec_hashes": contributors, "scanner_partition": max(partitions.reindex(contributors).astype(str))})
    return pd.DataFrame(out, columns=["symbol", "weight", "sector", "spec_hashes", "scanner_partition"])


def risk_contributions(weights: pd.Series, cov: pd.DataFrame) -> pd.Series:
    """Each strategy's share of portfolio volatility, ``w_i (Σw)_i / σ_p``; they sum to ``σ_p``."""
    w = weights.reindex(cov.index).to_numpy(dtype=float)
    sigma_w = cov.to_numpy(dtype=float) @ w
    vol = float(np.sqrt(w @ sigma_w))
    return pd.Series((w * sigma_w / vol if vol > 0 else np.zeros_like(w)) + 0.0, index=cov.index)  # no -0.0
