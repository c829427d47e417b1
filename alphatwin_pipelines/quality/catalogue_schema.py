"""Rules about a row's identity: its types, its symbol, its date and its uniqueness.

These come first because a row whose key is wrong cannot be placed in any partition or
series, so nothing computed from it downstream would mean anything.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from alphatwin_pipelines.calendar import all_sessions
from alphatwin_pipelines.quality.pandera_schema import NUMERIC_COLUMNS
from alphatwin_pipelines.quality.rules import Rule, RuleContext, render_columns
from alphatwin_pipelines.schema import BAR_COLUMNS
from alphatwin_pipelines.universe import is_valid_symbol


def _series(frame: pd.DataFrame, mask) -> pd.Series:
    return pd.Series(np.asarray(mask, dtype=bool), index=frame.index)


def _schema_rule(rule_id: str, description: str, columns: tuple[str, ...]) -> Rule:
    """A rule whose rows pandera (plus our coercion) already found; it only reports them."""

    def check(frame: pd.DataFrame, ctx: RuleContext) -> pd.Series:
        return _series(frame, ctx.schema_failure(rule_id))

    def explain(frame: pd.DataFrame, ctx: RuleContext, rows: np.ndarray) -> pd.Series:
        masks = {c: ctx.schema_failure(rule_id, c) for c in columns}
        return render_columns(ctx.raw, columns, rows, masks)

    return Rule(rule_id, "ERROR", description, check, columns=columns, explain=explain)


def _dates(frame: pd.DataFrame) -> pd.Series:
    return frame["date"]


def _known(frame: pd.DataFrame) -> np.ndarray:
    return _dates(frame).notna().to_numpy()


def _check_symbol_format(frame: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    symbols = frame["symbol"]
    codes, uniques = pd.factorize(symbols)
    valid = np.array([is_valid_symbol(str(s)) for s in uniques] + [True], dtype=bool)
    return _series(frame, ~valid[codes])  # code -1 (null) maps to the trailing True


def _check_not_in_universe(frame: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    if ctx.universe is None:
        return _series(frame, np.zeros(len(frame), dtype=bool))
    listed = frame["symbol"].isin(list(ctx.universe)).fillna(True).to_numpy(dtype=bool)
    return _series(frame, frame["symbol"].notna().to_numpy() & ~listed)


def _check_source_missing(frame: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    source = frame["source"]
    blank = source.isna() | (source.fillna("").str.strip() == "")
    return _series(frame, blank.to_numpy(dtype=bool) & ~ctx.schema_failure("schema.missing_column", "source"))


def _check_duplicate(frame: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    keys = frame[["symbol", "date"]]
    complete = keys.notna().all(axis=1).to_numpy()
    duplicated = keys.duplicated(keep=False).to_numpy()
    return _series(frame, complete & duplicated)


def _explain_duplicate(frame: pd.DataFrame, ctx: RuleContext, rows: np.ndarray) -> pd.Series:
    keys = frame[["symbol", "date"]].iloc[rows]
    copies = keys.groupby(["symbol", "date"], sort=False)["symbol"].transform("size")
    base = render_columns(ctx.raw, ("symbol", "date"), rows)
    return base + " (" + copies.astype("string").to_numpy(dtype=object) + " copies)"


def _check_weekend(frame: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    return _series(frame, _known(frame) & (_dates(frame).dt.day_of_week >= 5).fillna(False).to_numpy(dtype=bool))


def _in_calendar(frame: pd.DataFrame) -> np.ndarray:
    sessions = all_sessions()
    day = _dates(frame).dt.normalize()
    return ((day >= sessions[0]) & (day <= sessions[-1])).fillna(False).to_numpy(dtype=bool)


def _check_holiday(frame: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    day = _dates(frame).dt.normalize().to_numpy()
    sessions = all_sessions().to_numpy()
    position = np.clip(np.searchsorted(sessions, day), 0, len(sessions) - 1)
    is_session = sessions[position] == day
    weekday = (_dates(frame).dt.day_of_week < 5).fillna(False).to_numpy(dtype=bool)
    return _series(frame, _in_calendar(frame) & weekday & ~is_session)


def _check_out_of_calendar(frame: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    return _series(frame, _known(frame) & ~_in_calendar(frame) & ~_check_future(frame, ctx).to_numpy())


def _check_future(frame: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    later = _dates(frame).dt.normalize() > ctx.as_of.normalize()
    return _series(frame, later.fillna(False).to_numpy(dtype=bool))


def _explain_future(frame: pd.DataFrame, ctx: RuleContext, rows: np.ndarray) -> pd.Series:
    return render_columns(ctx.raw, ("date",), rows) + f" > as_of={ctx.as_of:%Y-%m-%d}"


def _check_time_of_day(frame: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    dates = _dates(frame)
    return _series(frame, (dates != dates.dt.normalize()).fillna(False).to_numpy(dtype=bool) & _known(frame))


RULES: tuple[Rule, ...] = (
    _schema_rule(
        "schema.missing_column",
        "A required bar column is absent, so every row fails; make the source emit all of "
        + ", ".join(BAR_COLUMNS) + ".",
        BAR_COLUMNS,
    ),
    _schema_rule(
        "schema.null_symbol",
        "The symbol is empty, so the row cannot be attributed to any instrument; fix the source's ticker mapping.",
        ("symbol",),
    ),
    _schema_rule(
        "schema.null_date",
        "The date is empty, so the row cannot be placed in a partition; fix the source's date parsing.",
        ("date",),
    ),
    _schema_rule(
        "schema.unparseable_date",
        "The date cannot be read as a calendar date; emit ISO dates (YYYY-MM-DD) or datetime64 values.",
        ("date",),
    ),
    _schema_rule(
        "schema.non_numeric_value",
        "A numeric column holds text or another non-number (or the whole column has the wrong type); "
        "parse numbers in the source adapter before emitting the bar.",
        NUMERIC_COLUMNS,
    ),
    Rule(
        "symbol.bad_format", "ERROR",
        "The symbol is not an exchange ticker (1-6 upper-case letters/digits, optional class suffix like BRK.B); "
        "upper-case and trim it, or map the vendor code to the ticker.",
        _check_symbol_format, columns=("symbol",),
    ),
    Rule(
        "symbol.not_in_universe", "WARNING",
        "The symbol is not in the configured universe, so nothing downstream will use it; "
        "add it to ALPHATWIN_UNIVERSE or stop requesting it.",
        _check_not_in_universe, columns=("symbol",),
    ),
    Rule(
        "source.missing", "WARNING",
        "The source column is empty, so the row's provenance is unknown; set it in the source adapter.",
        _check_source_missing, columns=("source",),
    ),
    Rule(
        "key.duplicate", "ERROR",
        "The same (symbol, date) appears more than once and we cannot tell which copy is right, "
        "so all copies are rejected; de-duplicate at the source.",
        _check_duplicate, columns=("symbol", "date"), explain=_explain_duplicate,
    ),
    Rule(
        "date.weekend", "ERROR",
        "The date is a Saturday or Sunday, when the exchange never trades; check the source's timezone handling.",
        _check_weekend, columns=("date",),
    ),
    Rule(
        "date.holiday", "ERROR",
        "The date is a weekday on which NYSE was closed (a holiday or special closure); "
        "drop the row or fix the date shift in the source.",
        _check_holiday, columns=("date",),
    ),
    Rule(
        "date.future", "ERROR",
        "The date is after the validation date, so the bar cannot have traded yet; check the source's clock and date parsing.",
        _check_future, columns=("date",), explain=_explain_future,
    ),
    Rule(
        "date.out_of_calendar", "ERROR",
        "The date lies outside the exchange calendar the project knows (1990 to about a year ahead); "
        "fix the date, it is almost certainly mis-parsed.",
        _check_out_of_calendar, columns=("date",),
    ),
    Rule(
        "date.time_of_day", "ERROR",
        "The date carries a time of day, so it would not join with other daily bars; normalise it to midnight of the session.",
        _check_time_of_day, columns=("date",),
    ),
)
