"""From an allocation version to whole-share orders: target weight × equity / price − held shares."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from alphatwin_pipelines.execution.model import AccountState, Order

ALLOCATION_COLUMNS = ("allocation_version", "as_of", "method", "kind", "name", "weight", "sector",
                      "risk_contribution", "spec_hashes", "scanner_partition")


@dataclass(frozen=True)
class Dust:
    symbol: str
    qty: int
    notional: float


def symbol_targets(allocation: pd.DataFrame, source: str = "allocation") -> pd.DataFrame:
    """The ``kind == "symbol"`` rows of one allocation version, checked against the contract."""
    missing = [c for c in ALLOCATION_COLUMNS if c not in allocation.columns]
    if missing:
        raise ValueError(f"{source} lacks contract column(s) {missing} (docs/contracts.md, portfolio_allocations)")
    versions = allocation["allocation_version"].dropna().unique()
    if len(versions) != 1:
        raise ValueError(f"{source} must hold exactly one allocation_version, found {sorted(versions)}")
    rows = allocation[allocation["kind"] == "symbol"]
    duplicated = rows["name"][rows["name"].duplicated()].unique()
    if len(duplicated):
        raise ValueError(f"{source} lists symbol(s) {sorted(duplicated)} more than once; one weight per symbol")
    bad = rows[~rows["weight"].map(lambda w: isinstance(w, (int, float)) and math.isfinite(w))]
    if len(bad):
        raise ValueError(f"{source} has non-finite weight(s) for {sorted(bad['name'])}")
    return rows.sort_values("name").reset_index(drop=True)


def generate_orders(allocation: pd.DataFrame, account: AccountState, prices: Mapping[str, float], session: str,
                    *, min_notional: float = 100.0, source: str = "allocation") -> tuple[list[Order], list[Dust]]:
    """Orders moving ``account`` to the allocation's symbol weights at ``prices`` (the close of ``session``).

    Held symbols absent from the allocation are sold down to zero. Changes worth less than
    ``min_notional`` are returned as dust instead of orders (not worth the fees).
    """
    targets = symbol_targets(allocation, source)
    version = str(targets["allocation_version"].iloc[0]) if len(targets) else str(allocation["allocation_version"].iloc[0])
    equity = account.equity(prices)
    if equity <= 0:
        raise ValueError(f"account equity is {equity:.2f}; cannot size orders for {version}")
    by_symbol = {row.name: row for row in targets.itertuples(index=False)}
    orders, dust = [], []
    for symbol in sorted(set(by_symbol) | {s for s, q in account.positions.items() if q}):
        row = by_symbol.get(symbol)
        weight = float(row.weight) if row is not None else 0.0
        price = prices.get(symbol)
        if price is None or not (math.isfinite(price) and price > 0):
            raise ValueError(f"no valid close for {symbol} at {session} (got {price}); "
                             f"materialise cleaned_ohlcv for {session} before executing {version}")
        delta = math.trunc(weight * equity / price) - int(account.positions.get(symbol, 0))
        if delta == 0:
            continue
        if abs(delta) * price < min_notional:
            dust.append(Dust(symbol, delta, abs(delta) * price))
            continue
        orders.append(Order(
            allocation_version=version, symbol=symbol, side="buy" if delta > 0 else "sell", qty=abs(delta),
            reference_price=float(price), session=session, target_weight=weight,
            spec_hashes=tuple(json.loads(row.spec_hashes)) if row is not None and row.spec_hashes else (),
            scanner_partition=str(row.scanner_partition) if row is not None else "",
        ))
    return orders, dust
