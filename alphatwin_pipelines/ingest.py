"""Ingest raw bars from a source into session partitions.

The source decides what it can read; this module decides what happens to the rest:
rejections go to the persistent log, symbols the provider could not serve fall back to the
last stored data, and nothing is written when nothing usable came back (so a failed run never
clobbers good partitions with empty ones).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from alphatwin_pipelines.partition_keys import session_key
from alphatwin_pipelines.schema import canonical_to_arrow, empty_bars, to_canonical
from alphatwin_pipelines.sources.base import NETWORK_RULES, BarSource, FetchResult, Rejection
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import RAW


class IngestError(RuntimeError):
    """Nothing usable came back. ``retryable`` is True only when the provider was unreachable."""

    def __init__(self, message: str, *, retryable: bool, rejections: Sequence[Rejection] = ()):
        super().__init__(message)
        self.retryable = retryable
        self.rejections = list(rejections)


@dataclass
class SessionReport:
    session: pd.Timestamp
    path: Path
    rows: int
    symbols: int
    symbols_missing: list[str]

    @property
    def key(self) -> str:
        return session_key(self.session)


@dataclass
class IngestReport:
    source: str
    universe_size: int
    sessions: list[SessionReport]
    rejections: list[Rejection]
    warnings: list[str] = field(default_factory=list)
    fallback_symbols: list[str] = field(default_factory=list)
    requests: int = 0

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.sessions)

    def failures_by_symbol(self) -> dict[str, list[Rejection]]:
        out: dict[str, list[Rejection]] = {}
        for r in self.rejections:
            out.setdefault(r.symbol or "(file)", []).append(r)
        return out


def ingest(
    source: BarSource,
    store: TableStore,
    symbols: Sequence[str],
    sessions: pd.DatetimeIndex,
    *,
    table: str = RAW,
    run_id: str | None = None,
) -> IngestReport:
    """Fetch ``symbols`` over ``sessions`` and replace each session's partition whole."""
    if len(sessions) == 0:
        raise IngestError("no exchange sessions in the requested range", retryable=False)
    symbols = sorted({s.upper() for s in symbols})
    result = source.fetch(symbols, sessions)
    bars = _restrict(result.bars, symbols, sessions)
    bars, fallback, warnings = _fall_back_to_stored(store, table, result, bars, sessions)
    _log_rejections(store, table, result.rejections, sessions, run_id)

    if bars.empty:
        raise IngestError(_nothing_usable_message(source, result, symbols, sessions),
                          retryable=_provider_unreachable(result), rejections=result.rejections)
    _refuse_empty_sessions_during_outage(result, bars, sessions)

    counts = store.write_sessions(table, bars, sessions, to_arrow=canonical_to_arrow)  # bars are canonical already
    present = bars.groupby("date")["symbol"].agg(set).to_dict()
    reports = [
        SessionReport(s, store.partition_path(table, s), counts[s], len(present.get(s, ())),
                      [sym for sym in symbols if sym not in present.get(s, ())])
        for s in sessions
    ]
    return IngestReport(
        source=source.describe(),
        universe_size=len(symbols),
        sessions=reports,
        rejections=result.rejections,
        warnings=[*result.warnings, *warnings],
        fallback_symbols=fallback,
        requests=result.requests,
    )


def _restrict(bars: pd.DataFrame, symbols, sessions) -> pd.DataFrame:
    if bars.empty:
        return empty_bars()
    bars = to_canonical(bars)
    keep = bars["symbol"].isin(symbols) & bars["date"].isin(sessions)
    return bars[keep].reset_index(drop=True)


def _fall_back_to_stored(store, table, result: FetchResult, bars, sessions):
    """Serve symbols the provider could not reach from the partitions already stored."""
    unreachable = sorted({r.symbol for r in result.rejections if r.rule in NETWORK_RULES and r.symbol})
    if not unreachable:
        return bars, [], []
    stored = store.read_partitions(table, sessions[0], sessions[-1], symbols=unreachable)
    if stored.empty:
        return bars, [], [
            f"provider unreachable for {len(unreachable)} symbol(s) and no stored data to fall back on"
        ]
    served = sorted(set(stored["symbol"]))
    merged = to_canonical(pd.concat([bars, stored[list(bars.columns)]], ignore_index=True))
    warning = (
        f"provider unreachable for {len(unreachable)} symbol(s); fell back to the last stored data "
        f"for {len(served)} of them ({', '.join(served[:10])}{'…' if len(served) > 10 else ''})"
    )
    return merged, served, [warning]


def _refuse_empty_sessions_during_outage(result: FetchResult, bars, sessions) -> None:
    """A session left empty because the provider was down must not be stored as 'no data'.

    A single-run range cannot materialise only some of its partitions, so the run fails
    (retryably) before writing anything, rather than recording empty sessions as done.
    """
    if not any(r.rule in NETWORK_RULES for r in result.rejections):
        return
    empty = sessions[~sessions.isin(bars["date"].unique())]
    if len(empty):
        shown = ", ".join(f"{d:%Y-%m-%d}" for d in empty[:5]) + (" …" if len(empty) > 5 else "")
        raise IngestError(
            f"the provider was unreachable and {len(empty)} session(s) ({shown}) have no stored data to fall "
            "back on; nothing was written. Retry when the provider answers.",
            retryable=True, rejections=result.rejections,
        )


def _log_rejections(store: TableStore, table, rejections, sessions, run_id) -> None:
    logged_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    window = f"{sessions[0]:%Y-%m-%d}..{sessions[-1]:%Y-%m-%d}"
    store.append_rejections(
        [
            {**r.to_record(), "table": table, "sessions": window, "run_id": run_id, "logged_at": logged_at}
            for r in rejections
        ]
    )


def _provider_unreachable(result: FetchResult) -> bool:
    return bool(result.rejections) and all(r.rule in NETWORK_RULES for r in result.rejections)


def _nothing_usable_message(source, result: FetchResult, symbols, sessions) -> str:
    window = f"{sessions[0]:%Y-%m-%d}..{sessions[-1]:%Y-%m-%d}"
    head = f"{source.describe()} returned no usable bars for any of {len(symbols)} symbol(s) in {window}."
    if not result.rejections:
        return (
            f"{head} No input was rejected: the source simply has no rows for these sessions. "
            "Check the date range (ALPHATWIN_START, the partition range) against the data the source holds."
        )
    counts = pd.Series([r.rule for r in result.rejections]).value_counts()
    lines = [f"{head} Rejections by rule: " + ", ".join(f"{k}={v}" for k, v in counts.items()) + "."]
    lines += [f"  - {r}" for r in result.rejections[:10]]
    if len(result.rejections) > 10:
        lines.append(f"  … {len(result.rejections) - 10} more in the rejected-inputs log")
    if _provider_unreachable(result):
        lines.append("The provider did not answer: check the network, the API key and the rate limit, then retry.")
    else:
        lines.append("Fix the inputs named above (see rejected_inputs.jsonl in the data directory) and re-run.")
    return "\n".join(lines)
