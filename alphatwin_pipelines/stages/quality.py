"""Quality stage: raw partitions in, validated and quarantined partitions out, plus the
evidence each data-quality check needs.

A range of sessions is validated in one call (the rule engine is vectorised, so a five-year
backfill costs seconds), with the rules' lookback read from the partitions just before it.
The session gate (``quality.gate``) is decided here too and stored per session, so that the
stages downstream skip a held session while the others flow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa

from alphatwin_pipelines.calendar import all_sessions
from alphatwin_pipelines.partition_keys import session_key
from alphatwin_pipelines.quality import missing_sessions, rule_catalogue, validate
from alphatwin_pipelines.quality.validate import REJECTED
from alphatwin_pipelines.quality.gate import HELD, GatePolicy, gate_sessions
from alphatwin_pipelines.schema import BAR_COLUMNS
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import GATE, QUARANTINED, RAW, VALIDATED, read_lookback, read_range, require_partitions

#: Sessions of history the lookback rules need (the longest rule window plus a margin).
LOOKBACK_SESSIONS = max(rule.lookback for rule in rule_catalogue()) + 5


def validated_bar_schema() -> pa.DataFrameSchema:
    """What every validated row guarantees: exact dtypes and the invariants downstream relies on."""
    price = pa.Column("float64", [pa.Check.gt(0)], nullable=False)
    return pa.DataFrameSchema(
        {
            "symbol": pa.Column("string", pa.Check.str_matches(r"^[A-Z][A-Z0-9]{0,5}([.\-][A-Z0-9]{1,3})?$")),
            "date": pa.Column("datetime64[ns]", nullable=False),
            "open": price, "high": price, "low": price, "close": price,
            "volume": pa.Column("int64", pa.Check.ge(0)),
            "dividend": pa.Column("float64", pa.Check.ge(0)),
            "split_ratio": pa.Column("float64", pa.Check.gt(0)),
            "source": pa.Column("string", nullable=False),
            "flags": pa.Column("string", nullable=False),
        },
        checks=[
            pa.Check(lambda f: (f["low"] <= f[["open", "close"]].min(axis=1)) & (f[["open", "close"]].max(axis=1) <= f["high"]),
                     name="low <= open, close <= high"),
            pa.Check(lambda f: ~f.duplicated(["symbol", "date"]), name="one row per (symbol, date)"),
        ],
        strict=False,
        name=VALIDATED,
    )


@dataclass
class SessionQuality:
    session: pd.Timestamp
    rows_in: int
    validated: int
    quarantined: int
    flagged: int
    allowed: int  # most quarantined rows the gate accepts for this session
    status: str  # the gate's decision: passed, held or released

    @property
    def held(self) -> bool:
        return self.status == HELD

    @property
    def key(self) -> str:
        return session_key(self.session)

    @property
    def pass_rate(self) -> float:
        return self.validated / self.rows_in if self.rows_in else 1.0


@dataclass
class QualityReport:
    sessions: list[SessionQuality]
    summary: pd.DataFrame  # one row per rule: rule_id, severity, violations, pass_rate, description
    failures: pd.DataFrame  # one row per violation, WARNINGs included
    validated: pd.DataFrame  # the range's validated rows (for the checks that re-examine them)
    history: pd.DataFrame  # validated rows before the range (for the missing-session check)
    #: What the lookback rules saw besides the validated rows: the raw history and the range's
    #: rejected raw rows. ``residual_errors`` needs it to rebuild the same panel.
    recheck_context: pd.DataFrame


def validate_sessions(store: TableStore, sessions: pd.DatetimeIndex, *, as_of=None, policy: GatePolicy = GatePolicy(),
                      released=()) -> QualityReport:
    """Validate ``sessions`` of raw bars and replace their validated, quarantined and gate partitions.

    ``policy`` and ``released`` (sessions a person accepts as they are) decide the gate.
    """
    require_partitions(store, RAW, sessions)
    raw = read_range(store, RAW, sessions)
    history = read_lookback(store, RAW, sessions[0], LOOKBACK_SESSIONS)
    result = validate(raw, history if len(history) else None, as_of=as_of)
    rejected = result.quarantined.loc[result.quarantined["action"] == "rejected", "raw_row"].to_numpy()
    context = pd.concat([history, raw.iloc[rejected]], ignore_index=True) if len(history) else raw.iloc[rejected]

    # raw_row becomes the row's position in its own raw partition file, so a partition's bytes
    # never depend on which range it was validated with.
    first_row = pd.Series(np.arange(len(raw))).groupby(raw["date"].to_numpy()).min()
    validated = result.validated.assign(raw_row=(result.validated["raw_row"] - first_row.reindex(result.validated["date"]).to_numpy()).astype("int64"))
    quarantined = result.quarantined
    if len(quarantined):
        q_day = pd.to_datetime(quarantined["partition"])
        quarantined = quarantined.assign(raw_row=(quarantined["raw_row"] - first_row.reindex(q_day).to_numpy()).astype("int64"))
    good = store.write_sessions(VALIDATED, validated, sessions)
    bad = store.write_sessions(QUARANTINED, quarantined, sessions, key="partition")
    raw_counts = raw.groupby("date").size()
    flagged = validated[validated["flags"] != ""].groupby("date").size()
    counts = pd.DataFrame({"session": sessions, "rows_in": [int(raw_counts.get(s, 0)) for s in sessions],
                           "quarantined": [bad[s] for s in sessions]})
    gate = gate_sessions(counts, policy, released)
    store.write_sessions(GATE, gate, sessions, key="session")
    reports = [SessionQuality(s, g.rows_in, good[s], bad[s], int(flagged.get(s, 0)), int(g.allowed), str(g.status))
               for s, g in zip(sessions, gate.itertuples())]
    validated_history = read_lookback(store, VALIDATED, sessions[0], LOOKBACK_SESSIONS)
    return QualityReport(reports, result.summary, result.failures, validated, validated_history,
                         context.reset_index(drop=True))


# -- the evidence behind each check ------------------------------------------------------------

def schema_failures(validated: pd.DataFrame) -> pd.DataFrame:
    """Pandera's failure cases for the validated rows (empty when the schema passes)."""
    try:
        validated_bar_schema().validate(validated, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        return cases[[c for c in ("column", "check", "failure_case", "index") if c in cases.columns]]
    return pd.DataFrame(columns=["column", "check", "failure_case", "index"])


def residual_errors(validated: pd.DataFrame, context: pd.DataFrame, *, as_of=None) -> pd.DataFrame:
    """Re-run every rule over the validated rows: any ERROR that would still reject a bar is a leak.

    ``context`` is ``QualityReport.recheck_context``: with it the lookback rules see the panel
    the first pass saw (a bar rejected by a lookback rule stays the next bar's reference), so a
    validated bar is judged against the same previous bar both times. An event quarantined in
    the first pass is quarantined again (its implausible value is still on the row): not a leak.
    """
    again = validate(validated[list(BAR_COLUMNS)], context[list(BAR_COLUMNS)] if len(context) else None, as_of=as_of)
    errors = again.failures[again.failures["action"] == "rejected"]
    return errors[["partition", "symbol", "date", "rule_id", "offending_value", "description"]].reset_index(drop=True)


#: Why a symbol misses a session in the validated table: its row never arrived (backfill it), or
#: it arrived and was rejected (``quarantined_ohlcv`` says why; fix it at the source and re-fetch).
NOT_DELIVERED, QUARANTINED_ROW = "not delivered", "quarantined"


def session_gaps(validated: pd.DataFrame, history: pd.DataFrame, failures: pd.DataFrame | None = None) -> pd.DataFrame:
    """Runs of missing sessions for listed symbols: symbol, first and last missing session, length
    and cause (``NOT_DELIVERED`` or, where ``failures`` rejected the symbol's row, ``QUARANTINED_ROW``)."""
    columns = ["symbol", "first_missing", "last_missing", "sessions", "cause"]
    pairs = missing_sessions(validated[list(BAR_COLUMNS)], history[list(BAR_COLUMNS)] if len(history) else None)
    if pairs.empty:
        return pd.DataFrame(columns=columns)
    pairs = pairs.sort_values(["symbol", "session"]).reset_index(drop=True)
    pairs["cause"] = np.where(_rejected_keys(failures, pairs), QUARANTINED_ROW, NOT_DELIVERED)
    position = all_sessions().get_indexer(pd.DatetimeIndex(pairs["session"]))
    symbols, causes = pairs["symbol"].to_numpy(), pairs["cause"].to_numpy()
    new_run = np.r_[True, (symbols[1:] != symbols[:-1]) | (causes[1:] != causes[:-1]) | (np.diff(position) != 1)]
    grouped = pairs.groupby(np.cumsum(new_run))
    return pd.DataFrame(
        {
            "symbol": grouped["symbol"].first().to_numpy(),
            "first_missing": grouped["session"].min().to_numpy(),
            "last_missing": grouped["session"].max().to_numpy(),
            "sessions": grouped.size().to_numpy(),
            "cause": grouped["cause"].first().to_numpy(),
        },
        columns=columns,
    )


def _rejected_keys(failures: pd.DataFrame | None, pairs: pd.DataFrame) -> np.ndarray:
    """Which (symbol, session) pairs had a raw row that an ERROR rule rejected."""
    if failures is None or failures.empty:
        return np.zeros(len(pairs), dtype=bool)
    rejected = failures[failures["action"] == REJECTED]
    keys = pd.MultiIndex.from_arrays([rejected["symbol"].astype(str), pd.to_datetime(rejected["partition"], errors="coerce")])
    return pd.MultiIndex.from_arrays([pairs["symbol"].astype(str), pd.to_datetime(pairs["session"])]).isin(keys)
