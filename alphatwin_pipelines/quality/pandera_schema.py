"""Types: the pandera schema for raw bars, and the coercion the other rules compute on.

Sources hand us whatever their parsers produced (strings in price columns, dates as text),
so types are judged row by row: pandera names the rows that cannot be coerced, and every
other rule then works on a float/datetime copy in which those values are NaN/NaT.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import pandera.pandas as pa

from alphatwin_pipelines.schema import BAR_COLUMNS, DATE_DTYPE

NUMERIC_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume", "dividend", "split_ratio")
TEXT_COLUMNS: tuple[str, ...] = ("symbol", "source")


@lru_cache(maxsize=1)
def raw_bar_schema() -> pa.DataFrameSchema:
    """Raw bars as a source may deliver them: coercible types, symbol and date never null.

    Volume is checked as a number here, not an int64: a fractional or negative volume is a
    value problem with its own rule, and a clearer message than a failed cast.
    """
    return pa.DataFrameSchema(
        {
            "symbol": pa.Column(str, nullable=False, coerce=True),
            "date": pa.Column(DATE_DTYPE, nullable=False, coerce=True),
            **{c: pa.Column("float64", nullable=True, coerce=True) for c in NUMERIC_COLUMNS},
            "source": pa.Column(str, nullable=True, coerce=True),
        },
        strict=False,
        name="raw_bars",
    )


def _rule_for_failure(column: str | None, check: str) -> str | None:
    if check == "column_in_dataframe":
        return "schema.missing_column"
    if check == "not_nullable":
        return {"symbol": "schema.null_symbol", "date": "schema.null_date"}.get(column or "")
    if check.startswith(("coerce_dtype", "dtype")):
        if column == "date":
            return "schema.unparseable_date"
        if column in NUMERIC_COLUMNS:
            return "schema.non_numeric_value"
    return None


def pandera_failures(raw: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    """Rule id -> column -> row mask, read from pandera's lazy ``failure_cases``.

    ``raw`` must have a positional index. A failure pandera reports for a whole column (no
    row index) blames every row, which is how an entirely mistyped column is rejected.
    """
    n = len(raw)
    found: dict[str, dict[str, np.ndarray]] = {}
    try:
        raw_bar_schema().validate(raw, lazy=True)
        return found
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
    except Exception:  # pandera cannot digest some exotic objects; our own coercion still judges them
        return found
    for case in cases.itertuples(index=False):
        column = case.failure_case if case.check == "column_in_dataframe" else case.column
        rule_id = _rule_for_failure(column, str(case.check))
        if rule_id is None or column is None:
            continue
        mask = found.setdefault(rule_id, {}).setdefault(str(column), np.zeros(n, dtype=bool))
        index = case.index
        if index is None or (isinstance(index, float) and np.isnan(index)) or rule_id == "schema.missing_column":
            mask[:] = True
        elif 0 <= int(index) < n:
            mask[int(index)] = True
    return found


def coerce_numeric(values: pd.Series) -> np.ndarray:
    """Float64 view of a column; anything that is not a number becomes NaN.

    Booleans count as non-numbers: a True volume is a parsing bug, not one share.
    """
    if pd.api.types.is_bool_dtype(values):
        return np.full(len(values), np.nan)
    if pd.api.types.is_numeric_dtype(values):
        try:
            return values.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            pass
    try:
        coerced = pd.to_numeric(values, errors="coerce")
        return pd.Series(coerced).to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError, OverflowError):
        return np.array([_one_number(v) for v in values], dtype=np.float64)


def _one_number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return np.nan


def coerce_dates(values: pd.Series) -> pd.Series:
    """``datetime64[ns]`` copy of a date column (tz dropped); unparseable values become NaT."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_localize(None)
    if not pd.api.types.is_datetime64_dtype(values):
        try:
            values = pd.to_datetime(values, errors="coerce")
        except (TypeError, ValueError, OverflowError):
            values = pd.Series([_one_date(v) for v in values], index=values.index, dtype="datetime64[us]")
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            values = values.dt.tz_convert(None)
    if not pd.api.types.is_datetime64_dtype(values):
        return pd.Series(pd.NaT, index=values.index, dtype=DATE_DTYPE)
    lo, hi = pd.Timestamp.min.ceil("D"), pd.Timestamp.max.floor("D")
    in_range = values.isna() | ((values >= lo) & (values <= hi))
    return values.where(in_range).astype(DATE_DTYPE)


def _one_date(value):
    try:
        stamp = pd.Timestamp(value)
        return stamp.tz_localize(None) if stamp.tzinfo else stamp
    except (TypeError, ValueError, OverflowError):
        return pd.NaT


def coerce_text(values: pd.Series) -> pd.Series:
    """Pandas ``string`` copy of a text column, nulls kept as NA."""
    try:
        text = values.astype("string")
    except (TypeError, ValueError):
        text = values.map(lambda v: v if pd.isna(v) else str(v)).astype("string")
    return text


def coerce_bars(raw: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, dict[str, np.ndarray]]]:
    """The typed frame rules compute on, plus the schema failures (pandera's, and ours).

    Our own coercion failures are unioned with pandera's so no value the typed frame turned
    into NaN can slip through unblamed, even where pandera's casting is more lenient.
    """
    n = len(raw)
    failures = pandera_failures(raw)
    typed: dict[str, object] = {}
    for column in BAR_COLUMNS:
        if column not in raw.columns:
            failures.setdefault("schema.missing_column", {})[column] = np.ones(n, dtype=bool)
            typed[column] = pd.Series(pd.NA if column in TEXT_COLUMNS else np.nan, index=raw.index)
            typed[column] = (
                typed[column].astype("string") if column in TEXT_COLUMNS
                else pd.Series(pd.NaT, index=raw.index, dtype=DATE_DTYPE) if column == "date"
                else typed[column].astype(np.float64)
            )
            continue
        source = raw[column]
        present = ~np.asarray(pd.isna(source), dtype=bool)
        if column in TEXT_COLUMNS:
            typed[column] = coerce_text(source)
            if column == "symbol":
                _union(failures, "schema.null_symbol", column, ~present)
        elif column == "date":
            typed[column] = coerce_dates(source)
            _union(failures, "schema.null_date", column, ~present)
            _union(failures, "schema.unparseable_date", column, present & typed[column].isna().to_numpy())
        else:
            typed[column] = pd.Series(coerce_numeric(source), index=raw.index)
            _union(failures, "schema.non_numeric_value", column, present & np.isnan(typed[column].to_numpy()))
    return pd.DataFrame(typed, index=raw.index), failures


def _union(failures: dict, rule_id: str, column: str, mask: np.ndarray) -> None:
    if mask.any():
        current = failures.setdefault(rule_id, {}).setdefault(column, np.zeros(len(mask), dtype=bool))
        current |= mask
