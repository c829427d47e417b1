"""Cleaning stage: corporate-action events with their adjustment factors, and cleaned OHLCV.

Adjusted prices (``adj_*``) are applied from the events when the cleaned table is read
(``load("cleaned_ohlcv")``), so a new split changes one symbol's factors instead of
rewriting its stored history; see ``alphatwin_pipelines.stages.cleaning``.
"""

import dagster as dg
import pandas as pd

from alphatwin_pipelines.corrections import CorrectionsError
from alphatwin_pipelines.partition_keys import session_key
from alphatwin_pipelines.profiling import measure
from alphatwin_pipelines.reporting import markdown_table, preview
from alphatwin_pipelines.stages.cleaning import build_events, clean_sessions
from alphatwin_pipelines.tables import CLEANED, FACTORS, VALIDATED, MissingUpstreamError
from assets.partitions import nyse_sessions, sessions_of
from assets.resources import StorageResource


class CleaningConfig(dg.Config):
    """The missing-value policy: gaps up to this many sessions are forward-filled (prices only)."""

    max_ffill_sessions: int = 3


@dg.asset(
    name=FACTORS, deps=[VALIDATED], group_name="cleaning", kinds={"parquet"},
    partitions_def=nyse_sessions, backfill_policy=dg.BackfillPolicy.single_run(),
)
def adjustment_factors(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """Splits and cash dividends per session with their backward factors, rebuilt from the
    validated events and the user's corrections file (``corrections/corporate_actions.csv``).

    A symbol listed here has new factors: its adjusted history changes, and only its history.
    """
    with measure() as cost:
        try:
            report = build_events(storage.store(), sessions_of(context))
        except (MissingUpstreamError, CorrectionsError) as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
    per_session = report.per_session
    for day in per_session:
        ev = day.events
        context.add_asset_metadata(
            {"events": len(ev), "splits": int((ev["split_ratio"] != 1).sum()), "dividends": int((ev["dividend"] != 0).sum()),
             "flagged_events": int(ev["flag"].notna().sum()), "corrected_events": int(ev["correction"].notna().sum()),
             "symbols_rebased": preview(sorted(ev["symbol"].unique())),
             "held": day.held, "dagster/row_count": len(ev)},
            partition_key=day.key,
        )
    events = pd.concat([d.events for d in per_session], ignore_index=True)
    flagged = events[events["flag"].notna()]
    return dg.MaterializeResult(metadata={
        "events_in_run": len(events),
        "flagged": dg.MetadataValue.md(markdown_table(flagged[["symbol", "date", "dividend", "split_ratio", "prev_close", "flag"]])),
        "corrections_version": report.corrections_version or "none",
        "corrections": dg.MetadataValue.md(markdown_table(report.corrections)),
        "corrections_not_applied": int((~report.corrections["applied"].astype(bool)).sum()),
        **cost.as_metadata()})


@dg.asset(
    name=CLEANED, deps=[VALIDATED, FACTORS], group_name="cleaning", kinds={"parquet"},
    partitions_def=nyse_sessions, backfill_policy=dg.BackfillPolicy.single_run(),
)
def cleaned_ohlcv(context: dg.AssetExecutionContext, config: CleaningConfig, storage: StorageResource) -> dg.MaterializeResult:
    """Validated bars with short gaps forward-filled (flagged, volume never filled) and halts removed.

    Read it with ``load("cleaned_ohlcv")`` to get ``adj_open/high/low/close/volume`` as of the
    latest session, or ``as_of=`` any earlier date for the point-in-time view. A session the
    quality gate holds back is written empty (``held`` in its metadata) until it is released.
    """
    with measure() as cost:
        try:
            report = clean_sessions(storage.store(), sessions_of(context), max_ffill=config.max_ffill_sessions)
        except MissingUpstreamError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
    for session in report.sessions:
        context.add_asset_metadata(
            {"rows": report.rows[session], "filled_rows": report.filled[session], "held": bool(session in report.held),
             "dagster/row_count": report.rows[session]},
            partition_key=session_key(session),
        )
    gaps = report.gaps
    return dg.MaterializeResult(metadata={
        "filled_gaps": int((gaps["reason"] == "ffill").sum()),
        "unfilled_gaps": int((gaps["reason"] == "gap").sum()),
        "halts_removed": int((gaps["reason"] == "halt").sum()),
        "gaps_and_halts": dg.MetadataValue.md(markdown_table(gaps)),
        "held_sessions": dg.MetadataValue.json([session_key(s) for s in report.held]),
        **cost.as_metadata()})
