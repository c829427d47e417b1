"""AlphaTwin pipelines engine: pure functions and small classes over DataFrames and arrays.

Nothing here imports Dagster; the Dagster layer (assets/, jobs/, schedules/) sits on top.
For notebooks and scripts, ``load`` returns any stored table as a pandas DataFrame.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import CLEANED, REJECTED_INPUTS, read_adjusted

__all__ = ["load", "TableStore"]
__version__ = "0.1.0"


def load(
    table: str,
    symbols: Sequence[str] | str | None = None,
    start=None,
    end=None,
    data_dir=None,
    as_of=None,
) -> pd.DataFrame:
    """Return a stored table as a DataFrame.

    ``table`` is a session-partitioned table (``raw_ohlcv``, …), a whole table
    (``universe``) or ``rejected_inputs`` (the log). ``start``/``end`` are inclusive session
    dates and prune files before reading; ``symbols`` filters rows inside Parquet.
    ``data_dir`` defaults to ``ALPHATWIN_DATA_DIR`` (else the repository's ``data/``).

    ``cleaned_ohlcv`` comes with ``adj_open/high/low/close/volume`` backward-adjusted as of
    the latest cleaned session, or as of ``as_of`` using only events known then.
    """
    store = TableStore(data_dir)
    if isinstance(symbols, str):
        symbols = [symbols]
    if table == REJECTED_INPUTS:
        return store.read_rejections()
    if table == CLEANED:
        return read_adjusted(store, start=start, end=end, symbols=symbols, as_of=as_of)
    # A whole table wins over a folder of the same name: the folder then holds its immutable
    # versions (portfolio_allocations/<version>.parquet), not session partitions.
    if store.whole_path(table).exists():
        frame = store.read_table(table, symbols=symbols)
        if "date" in frame.columns and (start is not None or end is not None):
            lo = pd.Timestamp(start) if start is not None else frame["date"].min()
            hi = pd.Timestamp(end) if end is not None else frame["date"].max()
            frame = frame[frame["date"].between(lo, hi)].reset_index(drop=True)
        return frame
    if store.table_dir(table).is_dir():
        return store.read_partitions(table, start=start, end=end, symbols=symbols)
    known = sorted({p.stem for p in store.data_dir.glob("*")} - {REJECTED_INPUTS}) if store.data_dir.exists() else []
    raise KeyError(
        f"no table named {table!r} under {store.data_dir}; stored tables: {known or 'none'}. "
        "Materialise it first (make run) or point ALPHATWIN_DATA_DIR at the right folder."
    )
