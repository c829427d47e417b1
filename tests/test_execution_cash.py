"""A cash allocation (no strategy passed validation) traded after a stocked one: every position is closed."""

from __future__ import annotations

import pandas as pd

from alphatwin_pipelines.execution import PaperBroker, default_ledger_url, execute_allocation
from alphatwin_pipelines.portfolio.synthetic import validation_rows
from alphatwin_pipelines.schema import frame_to_arrow
from alphatwin_pipelines.stages.portfolio import allocate_portfolio
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import VALIDATION
from test_execution_support import bars_at, universe_symbols, write_allocation


def test_a_cash_allocation_after_a_stocked_one_closes_every_position(research_dir):
    symbols = universe_symbols(research_dir, 3)
    broker = PaperBroker(default_ledger_url(research_dir))
    stocked = write_allocation(research_dir, "2024-06-27", {s: 0.05 for s in symbols})
    assert len(execute_allocation(research_dir, broker, broker.engine, stocked).submitted) == 3

    store = TableStore(research_dir)
    store.write_table(VALIDATION, frame_to_arrow(validation_rows(["s1", "s2"], [False, False], "2024-06-28")))
    run = allocate_portfolio(store)  # nothing passed: all cash, decided on the newest scanner partition
    stored = pd.read_parquet(run.version_path)
    assert stored[["kind", "weight"]].to_records(index=False).tolist() == [("cash", 1.0)]

    report = execute_allocation(research_dir, broker, broker.engine, run.allocation.version)
    assert report.session == "2024-06-28" and len(report.fills) == 3  # the stocked buys filled at that open
    held = broker.positions()
    assert set(held) == set(symbols) and all(qty > 0 for qty in held.values())
    pending = {o.symbol: (o.side, o.qty) for o in broker.pending()}
    assert pending == {s: ("sell", qty) for s, qty in held.items()} and not report.rejected
    broker.settle("2024-07-01", bars_at(research_dir, "2024-07-01")["open"].to_dict())
    assert not any(broker.positions().values())
