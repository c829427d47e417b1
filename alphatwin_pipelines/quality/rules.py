"""The rule type, the context rules read, and the registry that assembles the catalogue.

A rule is data (id, severity, description, lookback) plus one vectorised function, so the
README table, the UI and the engine all read the same objects and cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

Severity = Literal["ERROR", "WARNING"]
SEVERITIES: tuple[str, ...] = ("ERROR", "WARNING")
#: What an ERROR rejects: the whole bar, or only the corporate action it carries (the bar's
#: prices are kept, flagged, and the event is quarantined so that it adjusts nothing).
Scope = Literal["bar", "event"]
SCOPES: tuple[str, ...] = ("bar", "event")

CheckFn = Callable[[pd.DataFrame, "RuleContext"], pd.Series]
ExplainFn = Callable[[pd.DataFrame, "RuleContext", np.ndarray], pd.Series]


class Panel:
    """History plus some of the partition's rows, one symbol after another in date order.

    Lookback rules compute on this so a return on the partition's first session can be
    measured against yesterday's close. The return/volume panel leaves out rows already
    rejected by a row-local ERROR rule: a zero price must not turn its good neighbours into
    outliers. ``row`` is the raw row position, -1 for history.
    """

    def __init__(self, frame: pd.DataFrame, n_rows: int, codes: np.ndarray | None = None):
        self.frame = frame.reset_index(drop=True)
        if codes is None:
            codes = pd.factorize(self.frame["symbol"].to_numpy(dtype=object))[0]
        self.codes = np.asarray(codes, dtype=np.int64)
        starts = np.r_[True, self.codes[1:] != self.codes[:-1]] if len(self.codes) else np.zeros(0, bool)
        group_start = np.maximum.accumulate(np.where(starts, np.arange(len(starts)), 0))
        self.position_in_symbol = np.arange(len(starts)) - group_start
        self.rows = self.frame["row"].to_numpy(dtype=np.int64)
        self.current = self.rows >= 0
        self.position_of_row = np.full(n_rows, -1, dtype=np.int64)
        self.position_of_row[self.rows[self.current]] = np.flatnonzero(self.current)
        self._memo: dict[str, object] = {}

    def __len__(self) -> int:
        return len(self.frame)

    def values(self, column: str) -> np.ndarray:
        return self.frame[column].to_numpy(dtype=np.float64)

    def previous(self, values: np.ndarray, periods: int = 1) -> np.ndarray:
        """``values`` shifted down within each symbol; NaN where the symbol has no earlier row."""
        out = np.full(len(values), np.nan)
        if periods < len(values):
            out[periods:] = values[:-periods] if periods else values
        out[self.position_in_symbol < periods] = np.nan
        return out

    def rolling_median(self, values: np.ndarray, window: int, min_periods: int) -> np.ndarray:
        """Per-symbol rolling median over the ``window`` rows ending at each row (NaN skipped)."""
        if not len(values):
            return values.astype(np.float64)
        grouped = pd.Series(values).groupby(self.codes, sort=False)
        return grouped.rolling(window, min_periods=min_periods).median().to_numpy()

    def memo(self, key: str, compute: Callable[[], object]):
        """Share one expensive computation (e.g. rolling return statistics) between rules."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def to_partition(self, flags: np.ndarray) -> np.ndarray:
        """Scatter a per-panel boolean back onto the partition's rows (history rows dropped)."""
        out = np.zeros(len(self.position_of_row), dtype=bool)
        out[self.rows[self.current]] = np.asarray(flags, dtype=bool)[self.current]
        return out

    def at_rows(self, values: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.asarray(values)[self.position_of_row[rows]]


@dataclass(frozen=True)
class RuleContext:
    """Everything a rule may read besides the partition frame itself.

    ``raw`` is the caller's frame with a positional index (used to show offending values as
    they were sent); ``schema_failures`` maps a schema rule id to per-column row masks found by
    pandera. ``panel`` (trusted rows) and ``presence`` (every row with a usable key, for
    missing-session checks) are only set for the second, lookback phase.
    """

    raw: pd.DataFrame
    as_of: pd.Timestamp
    universe: frozenset[str] | None = None
    schema_failures: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)
    panel: Panel | None = None
    presence: Panel | None = None

    def schema_failure(self, rule_id: str, column: str | None = None) -> np.ndarray:
        per_column = self.schema_failures.get(rule_id, {})
        columns = [column] if column else list(per_column)
        out = np.zeros(len(self.raw), dtype=bool)
        for name in columns:
            if name in per_column:
                out |= per_column[name]
        return out

    def unparseable(self, column: str) -> np.ndarray:
        """Rows whose value in ``column`` is already blamed on a schema rule (so not re-blamed as NaN)."""
        return (
            self.schema_failure("schema.non_numeric_value", column)
            | self.schema_failure("schema.missing_column", column)
        )


@dataclass(frozen=True)
class Rule:
    """One data-quality rule; ``check`` returns True where a row violates it."""

    id: str
    severity: Severity
    description: str
    check: CheckFn
    columns: tuple[str, ...] = ()
    lookback: int = 0
    explain: ExplainFn | None = None
    scope: Scope = "bar"

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"rule {self.id}: severity must be one of {SEVERITIES}, got {self.severity!r}")
        if self.scope not in SCOPES:
            raise ValueError(f"rule {self.id}: scope must be one of {SCOPES}, got {self.scope!r}")
        if not self.description.strip():
            raise ValueError(f"rule {self.id}: description must say what is wrong and how to fix it")

    @property
    def rejects_bar(self) -> bool:
        return self.severity == "ERROR" and self.scope == "bar"

    @property
    def action(self) -> str:
        """What a violation does to the row: rejected, event_quarantined or flagged."""
        if self.severity == "WARNING":
            return "flagged"
        return "rejected" if self.scope == "bar" else "event_quarantined"

    def violations(self, frame: pd.DataFrame, context: RuleContext) -> np.ndarray:
        """The check as a plain boolean array, NaN read as 'no violation'."""
        result = self.check(frame, context)
        values = np.asarray(pd.Series(result).fillna(False).to_numpy(), dtype=bool)
        if values.shape != (len(frame),):
            raise ValueError(f"rule {self.id} returned {values.shape}, expected ({len(frame)},)")
        return values

    def offending_values(self, frame: pd.DataFrame, context: RuleContext, rows: np.ndarray) -> pd.Series:
        """A short human-readable string per violating row, e.g. ``high=9.5 < low=10.1``."""
        if self.explain is not None:
            return pd.Series(self.explain(frame, context, rows), index=rows, dtype="string")
        return render_columns(context.raw, self.columns, rows)


def format_values(series: pd.Series) -> pd.Series:
    """Values as short strings: dates as YYYY-MM-DD, floats with up to 10 significant digits."""
    numeric = pd.api.types.is_float_dtype(series)  # there NaN is a value worth showing, elsewhere a null
    text = [_short(value, numeric) for value in series.to_numpy(dtype=object)]
    return pd.Series(text, index=series.index, dtype="string")


def _short(value, numeric: bool = False) -> str:
    if isinstance(value, float) and (numeric or value == value):
        return f"{value:.10g}"
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value):
        return "<null>"
    if isinstance(value, (pd.Timestamp, np.datetime64, dt.datetime)):
        stamp = pd.Timestamp(value)
        if pd.isna(stamp):
            return "<null>"
        return f"{stamp:%Y-%m-%d}" if stamp == stamp.normalize() else f"{stamp:%Y-%m-%d %H:%M:%S}"
    return str(value)[:40]


def render_columns(source: pd.DataFrame, columns: Iterable[str], rows: np.ndarray,
                   masks: Mapping[str, np.ndarray] | None = None) -> pd.Series:
    """``col=value`` pieces joined by ', '; with ``masks`` only the columns that failed are named."""
    out = np.full(len(rows), "", dtype=object)
    for column in columns:
        selected = np.ones(len(rows), dtype=bool) if masks is None else masks[column][rows]
        if not selected.any():
            continue
        if column in source.columns:
            text = format_values(source[column].iloc[rows[selected]]).to_numpy(dtype=object)
        else:
            text = np.full(int(selected.sum()), "<missing column>", dtype=object)
        piece = column + "=" + text
        current = out[selected]
        out[selected] = np.where(current == "", piece, current + ", " + piece)
    return pd.Series(out, index=rows, dtype="string")


def rule_catalogue() -> list[Rule]:
    """Every rule, in the order reports list them; ids are checked to be unique."""
    from alphatwin_pipelines.quality import catalogue_bars, catalogue_schema, catalogue_series

    rules = [*catalogue_schema.RULES, *catalogue_bars.RULES, *catalogue_series.RULES]
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise ValueError(f"duplicate rule id {rule.id!r}")
        seen.add(rule.id)
    return rules


def rule_table_markdown() -> str:
    """The catalogue as a markdown table (id | severity | action | lookback | description) for the README."""
    lines = ["| id | severity | action | lookback | description |", "|---|---|---|---|---|"]
    for rule in rule_catalogue():
        text = rule.description.replace("|", "\\|")
        lines.append(f"| `{rule.id}` | {rule.severity} | {rule.action} | {rule.lookback} | {text} |")
    return "\n".join(lines) + "\n"
