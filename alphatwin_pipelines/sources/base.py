"""The one interface every market-data source implements.

A source never raises for a bad symbol or file: it returns the bars it could read plus a
``Rejection`` for everything it could not, so one broken file never costs the good ones.
It raises only when it cannot work at all (misconfiguration), with a message saying what to
set.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import pandas as pd

from alphatwin_pipelines.schema import empty_bars

# Rejection rules. Network rules mean "the provider did not answer", not "the data is bad":
# only those make ingestion fall back to the last stored data.
RULE_PROVIDER_ERROR = "provider_error_body"
RULE_MISSING_COLUMNS = "missing_columns"
RULE_UNPARSABLE_NUMBER = "unparsable_number"
RULE_UNPARSABLE_DATE = "unparsable_date"
RULE_EMPTY_FILE = "empty_file"
RULE_DUPLICATE_DATE = "duplicate_date"
RULE_NO_DATA = "no_data"
RULE_UNKNOWN_FORMAT = "unknown_format"
RULE_NETWORK = "network_error"
RULE_CIRCUIT_OPEN = "circuit_open"
# A row with more fields than its header: its values cannot be placed in columns.
RULE_MALFORMED_ROW = "malformed_row"
RULE_UNREADABLE_FILE = "unreadable_file"
NETWORK_RULES = frozenset({RULE_NETWORK, RULE_CIRCUIT_OPEN})


class SourceConfigError(ValueError):
    """The source cannot run at all as configured (missing key, missing folder, ...)."""


@dataclass(frozen=True)
class Rejection:
    """One input the source could not use, with enough detail to find and fix it."""

    source: str
    rule: str
    reason: str
    symbol: str | None = None
    file: str | None = None
    line: int | None = None
    column: str | None = None
    value: str | None = None

    def to_record(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def __str__(self) -> str:
        where = ", ".join(
            f"{k}={v}"
            for k, v in (("symbol", self.symbol), ("file", self.file), ("line", self.line), ("column", self.column))
            if v is not None
        )
        return f"[{self.rule}] {where}: {self.reason}" if where else f"[{self.rule}] {self.reason}"


@dataclass
class FetchResult:
    """What a source returns: canonical bars, rejections, warnings, and how many calls it made."""

    bars: pd.DataFrame = field(default_factory=empty_bars)
    rejections: list[Rejection] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    requests: int = 0

    def failed_symbols(self) -> set[str]:
        return {r.symbol for r in self.rejections if r.symbol}


class BarSource(ABC):
    """Daily OHLCV for a set of symbols over a set of sessions."""

    name: str = "abstract"

    @abstractmethod
    def fetch(self, symbols: Sequence[str], sessions: pd.DatetimeIndex) -> FetchResult:
        """Bars for ``symbols`` on exactly ``sessions`` (rows on other dates are dropped).

        Returned bars are canonical (``schema.to_canonical``) with ``source`` set to
        ``self.name``. Symbols with no row at all are not errors here: the caller reports
        them as missing.
        """

    def describe(self) -> str:
        return self.name


def unique_symbols(symbols: Sequence[str]) -> list[str]:
    """Requested symbols stripped and upper-cased, blanks dropped, first occurrence kept."""
    return list(dict.fromkeys(s.strip().upper() for s in symbols if s and s.strip()))


def session_days(sessions) -> pd.DatetimeIndex:
    """Requested sessions as sorted, unique, tz-naive midnight ``datetime64[ns]`` dates."""
    days = pd.DatetimeIndex(sessions)
    if days.tz is not None:
        days = days.tz_localize(None)
    return days.normalize().unique().sort_values().astype("datetime64[ns]")
