"""Run the catalogue over a partition and split it into validated and quarantined rows.

Validation is two-phase: row-local rules first, then lookback rules on a panel of history
plus the rows that survived, so a single bad print cannot make its neighbours look bad.
Every raw row ends up in exactly one of ``validated`` or quarantined with ``action ==
"rejected"`` (``raw_row`` says which input row it was), so nothing is silently dropped. A row
whose only errors are in its corporate action stays validated (flagged) and its event is
quarantined beside it (``action == "event_quarantined"``): a split ratio outside
``adjustment.usable_split`` or a dividend that is not a finite number >= 0 is removed from the
validated row (row-local, so both passes see the row without it). A dividend at least the
previous close is kept as sent, because the price drop it claims to explain is real (KSU
2000-07-13, a garbled spin-off): it adjusts nothing (``adjustment.corporate_actions``) and a
re-check of the validated rows quarantines the event again, the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from alphatwin_pipelines.adjustment import usable_split
from alphatwin_pipelines.quality.catalogue_series import missing_session_pairs
from alphatwin_pipelines.quality.pandera_schema import coerce_bars
from alphatwin_pipelines.quality.rules import Panel, Rule, RuleContext, format_values, rule_catalogue
from alphatwin_pipelines.schema import BAR_COLUMNS, DATE_DTYPE, PRICE_COLUMNS

PANEL_COLUMNS = ("symbol", "date", "open", "high", "low", "close", "volume", "dividend", "split_ratio")
FAILURE_COLUMNS = ("partition", "symbol", "date", "raw_row", "rule_id", "severity", "action",
                   "description", "offending_value")
#: Rules that make a row's (symbol, session) key unusable; any other rejected row still shows
#: its session was delivered, so it does not count as a missing session.
KEY_RULE_IDS = frozenset({
    "schema.missing_column", "schema.null_symbol", "schema.null_date", "schema.unparseable_date",
    "symbol.bad_format", "date.weekend", "date.holiday", "date.future", "date.out_of_calendar",
    "date.time_of_day",
})
QUARANTINE_COLUMNS = ("raw_row", *BAR_COLUMNS, "rule_id", "rule_description", "severity",
                      "offending_value", "flags", "partition", "action")
REJECTED, EVENT_QUARANTINED = "rejected", "event_quarantined"


@dataclass(frozen=True)
class ValidationResult:
    """``validated`` (canonical bars + ``flags`` + ``raw_row``), ``quarantined`` (one row per
    rejected raw row or quarantined event, all its ERROR rule ids joined by ','), ``failures``
    (one row per violation, WARNINGs included) and ``summary`` (per-rule counts and pass rates)."""

    validated: pd.DataFrame
    quarantined: pd.DataFrame
    failures: pd.DataFrame
    summary: pd.DataFrame
    rows_in: int

    @property
    def pass_rate(self) -> float:
        return len(self.validated) / self.rows_in if self.rows_in else 1.0

    @property
    def accounted_rows(self) -> int:
        """Validated rows plus distinct rejected raw rows; always equals ``rows_in``."""
        rejected = self.quarantined[self.quarantined["action"] == REJECTED]
        return len(self.validated) + int(rejected["raw_row"].nunique())


@dataclass(frozen=True)
class _Evaluation:
    frame: pd.DataFrame  # coerced, unusable events removed: what validated rows and lookbacks see
    sent: pd.DataFrame  # coerced as sent: what row-local rules judged and explain
    context: RuleContext
    hits: dict[str, np.ndarray]
    rejected: np.ndarray


def _prepare(raw: pd.DataFrame, as_of: pd.Timestamp, universe) -> tuple[pd.DataFrame, RuleContext]:
    if not isinstance(raw, pd.DataFrame):
        raise TypeError(f"validate expects a pandas DataFrame of bars, got {type(raw).__name__}")
    if raw.columns.duplicated().any():
        raise ValueError(f"bars have duplicated column names {list(raw.columns[raw.columns.duplicated()])}")
    positional = raw.reset_index(drop=True)  # a new frame: the caller's is never touched
    frame, failures = coerce_bars(positional)
    listed = None if universe is None else frozenset(str(s) for s in universe)
    return frame, RuleContext(raw=positional, as_of=as_of, universe=listed, schema_failures=failures)


def _local_errors(rules: list[Rule], frame: pd.DataFrame, ctx: RuleContext, hits: dict) -> np.ndarray:
    rejected = np.zeros(len(frame), dtype=bool)
    for rule in rules:
        if rule.lookback == 0:
            hits[rule.id] = rule.violations(frame, ctx)
            if rule.rejects_bar:
                rejected |= hits[rule.id]
    return rejected


def _without_unusable_events(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with every dividend that is not a finite number >= 0 set to 0 and every split
    ratio outside ``usable_split`` set to 1: what the validated row carries (the event rules
    have quarantined the original). Lookback rules see these values in both passes."""
    dividend, split = frame["dividend"].to_numpy(dtype=np.float64), frame["split_ratio"].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad_dividend, bad_split = ~(np.isfinite(dividend) & (dividend >= 0)), ~usable_split(split)
    if not (bad_dividend.any() or bad_split.any()):
        return frame
    return frame.assign(dividend=np.where(bad_dividend, 0.0, dividend), split_ratio=np.where(bad_split, 1.0, split))


def _history_views(history, as_of, universe, rules) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """Earlier bars as the lookback rules see them: ``trusted`` (no row-local ERROR) for
    values, ``present`` (only well-keyed) for which sessions a symbol traded.

    A row quarantined in an earlier run still proves its session existed; judging presence
    from the trusted rows would report that session as missing in the next run.
    """
    if history is None or len(history) == 0:
        return None, None
    frame, ctx = _prepare(history, as_of, universe)
    hits: dict[str, np.ndarray] = {}
    local = _local_errors(rules, frame, ctx, hits)
    frame = _without_unusable_events(frame)
    keyed = np.ones(len(frame), dtype=bool)
    for rule_id in KEY_RULE_IDS:
        keyed &= ~hits[rule_id]
    columns = list(PANEL_COLUMNS)
    return frame.loc[~local, columns], frame.loc[keyed, columns]


def _build_panel(frame: pd.DataFrame, include: np.ndarray, history: pd.DataFrame | None) -> Panel:
    current = frame.loc[include, list(PANEL_COLUMNS)].assign(row=np.flatnonzero(include))
    parts = [current]
    if history is not None and len(history):
        # A history row for a (symbol, date) the partition also holds is an older copy: the partition wins.
        keys = pd.MultiIndex.from_frame(current[["symbol", "date"]])
        older = ~pd.MultiIndex.from_frame(history[["symbol", "date"]]).isin(keys)
        parts.insert(0, history.loc[older].assign(row=-1))
    combined = pd.concat(parts, ignore_index=True) if len(parts) > 1 else current.reset_index(drop=True)
    combined["symbol"] = combined["symbol"].astype(object)
    codes = pd.factorize(combined["symbol"], sort=True)[0]
    order = np.lexsort((combined["row"].to_numpy(), combined["date"].to_numpy().view(np.int64), codes))
    return Panel(combined.iloc[order], n_rows=len(frame), codes=codes[order])


def _evaluate(raw, history, as_of, universe) -> _Evaluation:
    rules = rule_catalogue()
    frame, ctx = _prepare(raw, as_of, universe)
    hits: dict[str, np.ndarray] = {}
    rejected = _local_errors(rules, frame, ctx, hits)
    sent, frame = frame, _without_unusable_events(frame)
    trusted, present = _history_views(history, as_of, universe, rules)
    keyed = np.ones(len(frame), dtype=bool)
    for rule_id in KEY_RULE_IDS:
        keyed &= ~hits[rule_id]
    ctx = replace(ctx, panel=_build_panel(frame, ~rejected, trusted), presence=_build_panel(frame, keyed, present))
    for rule in rules:
        if rule.lookback > 0:
            hits[rule.id] = rule.violations(frame, ctx) & ~rejected
            if rule.rejects_bar:
                rejected = rejected | hits[rule.id]
    return _Evaluation(frame, sent, ctx, hits, rejected)


def _as_of(as_of) -> pd.Timestamp:
    return (pd.Timestamp.today() if as_of is None else pd.Timestamp(as_of)).normalize()


def validate(raw: pd.DataFrame, history: pd.DataFrame | None = None, as_of=None, *,
             universe: Iterable[str] | None = None, partition: str | None = None) -> ValidationResult:
    """Judge ``raw`` bars with every rule; ``history`` (earlier sessions) only informs lookbacks.

    ``as_of`` (default: today) is the validation date for the future-date rule; pass it for
    reproducible results. ``partition`` labels quarantine/failure rows (default: each row's date).
    """
    result = _evaluate(raw, history, _as_of(as_of), universe)
    frame, ctx = result.frame, result.context
    rank = _sort_rank(frame)
    failing = np.flatnonzero(np.logical_or.reduce([*result.hits.values(), np.zeros(len(frame), bool)]))
    display = _display_keys(frame, ctx.raw, partition, failing)
    failures = _failures(result, display, rank)
    flags = _joined(failures[failures["action"] != REJECTED], "rule_id", ",")
    return ValidationResult(
        validated=_validated(frame, result.rejected, rank, flags),
        quarantined=_quarantined(ctx.raw, result.rejected, _event_errors(result), rank, failures, flags, display),
        failures=failures.drop(columns="rule_order").reset_index(drop=True),
        summary=_summary(result),
        rows_in=len(frame),
    )


def missing_sessions(bars: pd.DataFrame, history: pd.DataFrame | None = None, *,
                     universe: Iterable[str] | None = None, as_of=None) -> pd.DataFrame:
    """(symbol, session) pairs missing just before one of ``bars``' rows, for the asset check.

    A symbol counts as listed between its first and last stored date (history included), so
    a gap is reported once, by the partition whose row closes it. ``universe`` restricts the
    symbols checked.
    """
    result = _evaluate(bars, history, _as_of(as_of), universe)
    pairs = missing_session_pairs(result.context.presence)
    if universe is not None:
        pairs = pairs[pairs["symbol"].isin(list(result.context.universe))].reset_index(drop=True)
    return pairs


def _sort_rank(frame: pd.DataFrame) -> np.ndarray:
    """Each raw row's position in (symbol, date, raw_row) order, nulls last, for deterministic output."""
    order = frame[["symbol", "date"]].sort_values(["symbol", "date"], na_position="last", kind="stable").index
    rank = np.empty(len(frame), dtype=np.int64)
    rank[order.to_numpy()] = np.arange(len(frame))
    return rank


def _display_keys(frame: pd.DataFrame, raw: pd.DataFrame, partition, rows: np.ndarray) -> pd.DataFrame:
    """Symbol, date and partition label as text for the given raw rows (only failing rows need it)."""
    subset = frame.iloc[rows]
    raw_symbol = format_values(raw["symbol"].iloc[rows]) if "symbol" in raw else "<missing>"
    symbol = subset["symbol"].fillna(raw_symbol)
    date = format_values(subset["date"].dt.normalize()).astype(object)
    unknown = subset["date"].isna().to_numpy()
    if "date" in raw and unknown.any():
        date[unknown] = format_values(raw["date"].iloc[rows[unknown]]).to_numpy(dtype=object)
    label = pd.Series(str(partition), index=subset.index) if partition is not None else date.where(~unknown, "unknown")
    out = pd.DataFrame({"symbol": symbol.astype("string"), "date": date.astype("string"),
                        "partition": label.astype("string")})
    return out.set_axis(rows)


def _failures(result: _Evaluation, display: pd.DataFrame, rank: np.ndarray) -> pd.DataFrame:
    pieces = []
    for order, rule in enumerate(rule_catalogue()):
        rows = np.flatnonzero(result.hits.get(rule.id, ()))
        if not len(rows):
            continue
        judged = result.sent if rule.lookback == 0 else result.frame
        offending = rule.offending_values(judged, result.context, rows)
        pieces.append(pd.DataFrame({
            "raw_row": rows, "rule_order": order, "rule_id": rule.id, "severity": rule.severity,
            "action": rule.action,
            "description": rule.description, "offending_value": offending.to_numpy(dtype=object),
        }))
    if not pieces:
        empty = pd.DataFrame({c: pd.Series(dtype="string") for c in FAILURE_COLUMNS})
        return empty.astype({"raw_row": np.int64}).assign(rule_order=pd.Series(dtype=np.int64))
    long = pd.concat(pieces, ignore_index=True)
    long = long.iloc[np.lexsort((long["rule_order"].to_numpy(), rank[long["raw_row"].to_numpy()]))]
    keys = display.loc[long["raw_row"].to_numpy()]
    for column in ("partition", "symbol", "date"):
        long[column] = keys[column].to_numpy()
    text = ["rule_id", "severity", "action", "description", "offending_value", "partition", "symbol", "date"]
    return long[[*FAILURE_COLUMNS, "rule_order"]].astype({c: "string" for c in text})


def _joined(failures: pd.DataFrame, column: str, separator: str) -> pd.Series:
    """Per raw row, ``column`` values joined in catalogue order (failures are already sorted)."""
    if failures.empty:
        return pd.Series(dtype="string")
    return failures.groupby("raw_row", sort=False)[column].agg(separator.join).astype("string")


def _validated(frame: pd.DataFrame, rejected: np.ndarray, rank: np.ndarray, flags: pd.Series) -> pd.DataFrame:
    keep = np.flatnonzero(~rejected)
    keep = keep[np.argsort(rank[keep], kind="stable")]
    rows = frame.iloc[keep]
    out = pd.DataFrame({
        "symbol": rows["symbol"].astype("string"),
        "date": rows["date"].astype(DATE_DTYPE),
        **{c: rows[c].astype("float64") for c in PRICE_COLUMNS},
        "volume": rows["volume"].astype("int64"),
        "dividend": rows["dividend"].astype("float64"),
        "split_ratio": rows["split_ratio"].astype("float64"),
        "source": rows["source"].astype("string"),
        "flags": pd.array(flags.reindex(keep, fill_value="").fillna("").to_numpy(dtype=object), dtype="string"),
        "raw_row": keep.astype(np.int64),
    })
    return out.reset_index(drop=True)


def _event_errors(result: _Evaluation) -> np.ndarray:
    """Rows with an event-scope ERROR (their event is quarantined; the bar may still be validated)."""
    out = np.zeros(len(result.frame), dtype=bool)
    for rule in rule_catalogue():
        if rule.severity == "ERROR" and rule.scope == "event":
            out |= result.hits.get(rule.id, out)
    return out


def _quarantined(raw, rejected, event_errors, rank, failures, flags, display) -> pd.DataFrame:
    rows = np.flatnonzero(rejected | event_errors)
    rows = rows[np.argsort(rank[rows], kind="stable")]
    errors = failures[failures["severity"] == "ERROR"]
    out = {"raw_row": rows.astype(np.int64)}
    for column in BAR_COLUMNS:  # string-safe: a rejected row may hold anything in any column
        if column in raw.columns:
            values = raw[column].iloc[rows]
            out[column] = format_values(values).mask(values.isna().to_numpy()).to_numpy(dtype=object)
        else:
            out[column] = np.full(len(rows), None, dtype=object)
    joined = errors.groupby("raw_row", sort=False).agg(
        rule_id=("rule_id", ",".join), rule_description=("description", " | ".join),
        offending_value=("offending_value", "; ".join),
    ) if len(errors) else pd.DataFrame(columns=["rule_id", "rule_description", "offending_value"])
    for name in ("rule_id", "rule_description", "offending_value"):
        out[name] = joined[name].reindex(rows).to_numpy(dtype=object)
    out["severity"] = np.full(len(rows), "ERROR", dtype=object)
    out["flags"] = flags.reindex(rows, fill_value="").fillna("").to_numpy(dtype=object)
    out["partition"] = display["partition"].reindex(rows).to_numpy(dtype=object)
    out["action"] = np.where(rejected[rows], REJECTED, EVENT_QUARANTINED).astype(object)
    frame = pd.DataFrame(out)[list(QUARANTINE_COLUMNS)]
    return frame.astype({c: "string" for c in QUARANTINE_COLUMNS if c != "raw_row"})


def _summary(result: _Evaluation) -> pd.DataFrame:
    n = len(result.frame)
    records = []
    for rule in rule_catalogue():
        count = int(result.hits.get(rule.id, np.zeros(0, bool)).sum())
        records.append({"rule_id": rule.id, "severity": rule.severity, "lookback": rule.lookback,
                        "violations": count, "pass_rate": 1.0 - count / n if n else 1.0,
                        "description": rule.description})
    return pd.DataFrame.from_records(records)
