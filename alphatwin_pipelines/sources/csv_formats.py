"""The file formats the CSV folder source accepts, and the pure text-to-value parsing it relies on.

Kept apart from ``csv_source`` so the reading orchestration (which files, which rows, which
rejections) stays readable on its own: everything here is stateless and depends only on its
arguments, so the format table and parsers can be read, changed and tested without the folder logic.
``csv_source`` re-exports the public names, so existing imports from it keep working.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from alphatwin_pipelines.schema import BAR_COLUMNS, PRICE_COLUMNS


SOURCE_PATH_ENV = "ALPHATWIN_SOURCE_PATH"
SUFFIXES = (".csv", ".parquet")
NUMERIC_COLUMNS = (*PRICE_COLUMNS, "volume", "dividend", "split_ratio")
_PROVIDER_KEYS = ("Error Message", "Note", "Information", "error", "message", "status")
# Timestamps some tools write instead of a plain date; the bar belongs to the wall-clock date.
_TIMESTAMP = r"^(\d{4}-\d{2}-\d{2})(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}:?\d{2})?)?$"


@dataclass(frozen=True)
class _Format:
    label: str
    header: str  # example header, quoted in error messages
    date: str  # normalised name of the date column
    columns: dict  # canonical name -> normalised header name
    constants: dict  # canonical name -> value, for what the format does not carry
    hint: str  # how to get a complete file


_OHLCV = {c: c for c in (*PRICE_COLUMNS, "volume")}
YAHOO = _Format("Yahoo export", "Date,Open,High,Low,Close,Adj Close,Volume", "date", _OHLCV,
                {"dividend": 0.0, "split_ratio": 1.0}, "export it again from Yahoo's Historical Data page")
ALPHAVANTAGE = _Format(
    "AlphaVantage daily-adjusted",
    "timestamp,open,high,low,close,adjusted_close,volume,dividend_amount,split_coefficient", "timestamp",
    {**_OHLCV, "dividend": "dividend_amount", "split_ratio": "split_coefficient"}, {},
    "download it with function=TIME_SERIES_DAILY_ADJUSTED&datatype=csv (it carries the corporate actions)")
CANONICAL = _Format("canonical schema", ",".join(BAR_COLUMNS), "date",
                    {**_OHLCV, "dividend": "dividend", "split_ratio": "split_ratio"}, {},
                    "write every canonical column (`source` is optional)")
ACCEPTED = ("accepted headers are " + "; ".join(f"{f.label} `{f.header}`" for f in (YAHOO, ALPHAVANTAGE, CANONICAL))
            + " (as .csv or .parquet), plus an optional `symbol` column for several symbols in one file")


def _positions(names) -> dict[str, int]:
    """Header name (case and spacing ignored) -> position of its first occurrence."""
    pos: dict[str, int] = {}
    for i, name in enumerate(names):
        pos.setdefault(" ".join(str(name).replace("\ufeff", "").lower().split()), i)
    return pos


def _detect(names) -> _Format | None:
    if names & {"timestamp", "adjusted_close", "dividend_amount", "split_coefficient"}:
        return ALPHAVANTAGE
    if names & {"dividend", "split_ratio"}:
        return CANONICAL
    return YAHOO if names & {"date", "adj close", *_OHLCV} else None


def _provider_message(head: bytes) -> str | None:
    """The provider's own words when a file holds an API error body (JSON or HTML) instead of bars."""
    text = head.decode("utf-8-sig", errors="replace").strip()
    if text[:1] in ("{", "["):
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        for key in _PROVIDER_KEYS if isinstance(body, dict) else ():
            if key in body:
                return f"{key}: {body[key]}"
        found = re.search(r'"([^"]+)"\s*:\s*"([^"]*)"', text)
        return f"{found.group(1)}: {found.group(2)}" if found else text[:300]
    if text[:1] == "<":
        title = re.search(r"<title>(.*?)</title>", text, re.I | re.S)
        return f"an HTML page{': ' + title.group(1).strip() if title else ''}"
    return None


def _text(raw: pd.Series) -> pd.Series:
    """Text columns trimmed (object columns become text); typed columns unchanged."""
    raw = raw.astype(str) if raw.dtype == object else raw
    return raw.str.strip() if isinstance(raw.dtype, pd.StringDtype) else raw


def _numbers(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Values, and which cells held text that is not a number (empty cells become NaN)."""
    if pd.api.types.is_integer_dtype(raw) and not raw.hasnans:
        return raw.to_numpy(dtype=np.int64), np.zeros(len(raw), bool)
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        return raw.to_numpy(dtype="float64", na_value=np.nan), np.zeros(len(raw), bool)
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return values, np.isnan(values) & (raw != "").to_numpy()


def _dates(raw: pd.Series) -> np.ndarray:
    """Session dates at midnight (datetime64[ns]); NaT where the text is not a date."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = raw.dt.tz_localize(None) if getattr(raw.dt, "tz", None) else raw
        return parsed.dt.normalize().to_numpy(dtype="datetime64[ns]")
    parsed = pd.to_datetime(raw, format="%Y-%m-%d", errors="coerce").to_numpy(dtype="datetime64[ns]")
    retry = np.isnat(parsed) & (raw != "").to_numpy()
    if retry.any():
        day = raw[retry].str.extract(_TIMESTAMP, expand=False)
        parsed[retry] = pd.to_datetime(day, format="%Y-%m-%d", errors="coerce").to_numpy(dtype="datetime64[ns]")
    return parsed
