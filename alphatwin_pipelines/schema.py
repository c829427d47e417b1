"""The canonical daily-bar schema every source produces and every stage reads.

Raw bars are stored exactly as traded (unadjusted). Corporate actions ride along on the
row where they take effect, so adjustment can be rebuilt from the raw table alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

BAR_COLUMNS: tuple[str, ...] = (
    "symbol",
    "date",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "dividend",
    "split_ratio",
    "source",
)

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")

#: One line per column, used by the README and by error messages.
BAR_COLUMN_DOCS: dict[str, str] = {
    "symbol": "ticker, upper case (e.g. `AAPL`, `BRK.B`)",
    "date": "exchange session date (XNYS)",
    "open": "unadjusted opening price",
    "high": "unadjusted high",
    "low": "unadjusted low",
    "close": "unadjusted closing price",
    "volume": "unadjusted share volume",
    "dividend": "cash dividend per share on its ex-date row, else 0",
    "split_ratio": "new shares per old share on the effective row (2.0 = 2-for-1), else 1.0",
    "source": "which source supplied the row",
}

BAR_ARROW_SCHEMA = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
        pa.field("open", pa.float64()),
        pa.field("high", pa.float64()),
        pa.field("low", pa.float64()),
        pa.field("close", pa.float64()),
        pa.field("volume", pa.int64()),
        pa.field("dividend", pa.float64()),
        pa.field("split_ratio", pa.float64()),
        pa.field("source", pa.string()),
    ]
)

DATE_DTYPE = "datetime64[ns]"


def empty_bars() -> pd.DataFrame:
    """A zero-row frame with the canonical columns and dtypes."""
    return to_canonical(pd.DataFrame({c: [] for c in BAR_COLUMNS}))


def to_canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Coerce a frame that already has the canonical columns to the canonical dtypes and order.

    Rows are sorted by (symbol, date) so that the same input always serialises to the same
    bytes. Raises ``ValueError`` naming the missing columns, so callers can say which input
    lacks them.
    """
    missing = [c for c in BAR_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"missing required columns {missing}; expected {list(BAR_COLUMNS)}")
    out = pd.DataFrame(
        {
            "symbol": frame["symbol"].astype("string").str.upper(),
            "date": pd.to_datetime(frame["date"]).astype(DATE_DTYPE),
            **{c: frame[c].astype("float64") for c in PRICE_COLUMNS},
            "volume": frame["volume"].astype("int64"),
            "dividend": frame["dividend"].astype("float64"),
            "split_ratio": frame["split_ratio"].astype("float64"),
            "source": frame["source"].astype("string"),
        }
    )
    out = out.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
    return out


def bars_to_arrow(frame: pd.DataFrame) -> pa.Table:
    """Canonical frame to an Arrow table with the fixed schema and no pandas metadata.

    Dropping the pandas metadata keeps the Parquet bytes independent of pandas' version
    details, which is what makes re-materialisation byte-identical. Rows are ordered by
    (date, symbol): one file per session holds its rows in symbol order, and a multi-session
    frame can be sliced into per-session files without re-sorting.
    """
    return canonical_to_arrow(to_canonical(frame).sort_values(["date", "symbol"], kind="stable"))


def canonical_to_arrow(frame: pd.DataFrame) -> pa.Table:
    """``bars_to_arrow`` for a frame that is already canonical: rows kept in the order given."""
    arrays = [
        pa.array(frame["symbol"].to_numpy(dtype=object), type=pa.string()),
        pa.array(frame["date"].to_numpy(dtype="datetime64[D]"), type=pa.date32()),
        *[pa.array(frame[c].to_numpy(dtype=np.float64)) for c in PRICE_COLUMNS],
        pa.array(frame["volume"].to_numpy(dtype=np.int64)),
        pa.array(frame["dividend"].to_numpy(dtype=np.float64)),
        pa.array(frame["split_ratio"].to_numpy(dtype=np.float64)),
        pa.array(frame["source"].to_numpy(dtype=object), type=pa.string()),
    ]
    return pa.Table.from_arrays(arrays, schema=BAR_ARROW_SCHEMA)


def arrow_to_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow table (any stored table) to pandas with dates as ``datetime64[ns]``."""
    frame = table.to_pandas(date_as_object=False)
    for name, typ in zip(table.schema.names, table.schema.types):
        if pa.types.is_date(typ) or pa.types.is_timestamp(typ):
            frame[name] = frame[name].astype(DATE_DTYPE)
        elif pa.types.is_string(typ) or pa.types.is_large_string(typ):
            frame[name] = frame[name].astype("string")
    return frame


def frame_to_arrow(frame: pd.DataFrame) -> pa.Table:
    """Any frame to Arrow without pandas metadata, so its Parquet bytes are reproducible."""
    return pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
