"""Portfolio stage: validated strategies in, one versioned allocation out.

Reads ``validation_reports`` (the ``passed`` rows allocate), ``strategy_returns``,
``strategy_positions`` and the ``universe`` sectors; writes ``portfolio_allocations.parquet``,
its immutable copy ``portfolio_allocations/<allocation_version>.parquet`` and
``rebalance_suggestions.parquet`` (the correlation-regime verdict for this version) as one batch.
When no strategy passed, the allocation is all cash (``portfolio/cash.py``), written the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from alphatwin_pipelines.portfolio import Allocation, AllocationPolicy, CashAllocation, allocate, cash_allocation
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import (
    ALLOCATIONS,
    REBALANCE_SUGGESTIONS,
    STRATEGY_POSITIONS,
    STRATEGY_RETURNS,
    UNIVERSE,
    VALIDATION,
    version_table,
)

SUGGESTION_SCHEMA = pa.schema([
    pa.field("allocation_version", pa.string()), pa.field("as_of", pa.timestamp("ns")),
    pa.field("rebalance_suggested", pa.bool_()), pa.field("reason", pa.string()),
    pa.field("mean_abs_change", pa.float64()), pa.field("max_abs_change", pa.float64()),
    pa.field("frobenius_distance", pa.float64()), pa.field("threshold", pa.float64()), pa.field("window", pa.int64()),
    pa.field("recent_start", pa.timestamp("ns")), pa.field("recent_end", pa.timestamp("ns")),
    pa.field("previous_start", pa.timestamp("ns")), pa.field("previous_end", pa.timestamp("ns")),
])


@dataclass(frozen=True)
class PortfolioRun:
    allocation: Allocation | CashAllocation  # all cash when no strategy passed validation
    latest_path: Path
    version_path: Path
    suggestions_path: Path


def allocate_portfolio(store: TableStore, policy: AllocationPolicy = AllocationPolicy()) -> PortfolioRun:
    reports = store.read_table(VALIDATION, columns=["strategy_id", "passed", "reasons", "scanner_partition"])
    passed = reports[reports["passed"].fillna(False).astype(bool)][["strategy_id", "scanner_partition"]]
    if passed.empty:
        allocation = cash_allocation(reports, policy)
    else:
        allocation = allocate(
            store.read_table(STRATEGY_RETURNS, columns=["date", "strategy_id", "return"]),
            store.read_table(STRATEGY_POSITIONS, columns=["strategy_id", "symbol", "date", "weight"]),
            store.read_table(UNIVERSE, columns=["symbol", "sector"]),
            passed.reset_index(drop=True), policy)
    table = allocation.arrow()
    version_path = store.whole_path(version_table(allocation.version))
    with store.batch():
        latest_path = store.write_table(ALLOCATIONS, table)
        if not version_path.exists():  # a version is immutable: same hash, same content
            store.write_table(version_table(allocation.version), table)
        suggestions_path = store.write_table(REBALANCE_SUGGESTIONS, suggestion_table(allocation))
    return PortfolioRun(allocation, latest_path, version_path, suggestions_path)


def suggestion_table(allocation: Allocation | CashAllocation) -> pa.Table:
    record = {"allocation_version": allocation.version, "as_of": allocation.as_of, **allocation.regime.as_record()}
    return pa.Table.from_pylist([{f.name: record[f.name] for f in SUGGESTION_SCHEMA}], schema=SUGGESTION_SCHEMA)
