"""Ingestion stage: the symbol universe and raw OHLCV in NYSE-session partitions."""

import os

import dagster as dg
import pandas as pd

from alphatwin_pipelines.ingest import IngestError, IngestReport, ingest
from alphatwin_pipelines.profiling import measure
from alphatwin_pipelines.reconcile import reconcile
from alphatwin_pipelines.reporting import markdown_table, preview
from alphatwin_pipelines.schema import BAR_COLUMN_DOCS, frame_to_arrow
from alphatwin_pipelines.sources import SourceConfigError
from alphatwin_pipelines.tables import RAW, UNIVERSE
from alphatwin_pipelines.universe import UniverseError, resolve_universe
from assets.locations import location
from assets.partitions import nyse_sessions, sessions_of
from assets.resources import MarketDataResource, StorageResource

CHECK_SOURCES_AGREE = "sources_agree"

# Only the provider-facing asset retries, and only on provider trouble: bad data raises
# Failure(allow_retries=False), which Dagster never retries.
NETWORK_RETRY = dg.RetryPolicy(max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


@dg.asset(name=UNIVERSE, group_name="ingestion", kinds={"parquet"})
def universe(market_data: MarketDataResource, storage: StorageResource) -> dg.MaterializeResult:
    """Symbols with sectors: ALPHATWIN_UNIVERSE, or the source's own list (the synthetic market's)."""
    with measure() as cost:
        try:
            frame = resolve_universe(market_data.universe, market_data.build_source())
        except (UniverseError, SourceConfigError) as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        path = storage.store().write_table(UNIVERSE, frame_to_arrow(frame))
    sectors = frame["sector"].value_counts().rename_axis("sector").reset_index(name="symbols")
    return dg.MaterializeResult(
        metadata={
            "symbols": len(frame),
            "sectors": dg.MetadataValue.md(markdown_table(sectors)),
            "path": location(path),
            **cost.as_metadata(),
        }
    )


@dg.asset(
    name=RAW,
    group_name="ingestion",
    kinds={"parquet"},
    partitions_def=nyse_sessions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[universe],
    retry_policy=NETWORK_RETRY,
    metadata={"columns": dg.MetadataValue.md(markdown_table(pd.DataFrame(BAR_COLUMN_DOCS.items(), columns=["column", "meaning"])))},
)
def raw_ohlcv(
    context: dg.AssetExecutionContext, market_data: MarketDataResource, storage: StorageResource
) -> dg.MaterializeResult:
    """Unadjusted daily bars, one Parquet file per session, replaced whole on every run.

    A backfill of any range is one run (single-run backfill policy): the provider is asked
    once for the whole window, which is what makes a five-year backfill take seconds.
    """
    store = storage.store()
    sessions = sessions_of(context)
    try:
        source = market_data.build_source()
        symbols = store.read_table(UNIVERSE, columns=["symbol"])["symbol"].tolist()
    except (SourceConfigError, FileNotFoundError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc

    with measure() as cost:
        try:
            report = ingest(source, store, symbols, sessions, table=RAW, run_id=_run_id(context))
        except IngestError as exc:
            raise dg.Failure(
                description=str(exc),
                allow_retries=exc.retryable,
                metadata={"rejected": dg.MetadataValue.md(_rejections_table(exc.rejections))},
            ) from exc

    for warning in report.warnings:
        context.log.warning(warning)
    shared = _run_metadata(report, cost, len(sessions))
    injected = getattr(source, "injected_defects", None)
    if callable(injected):  # the synthetic market says what it damaged, to compare with the quarantine
        truth = injected(symbols, sessions)
        shared["injected_defects"] = len(truth)
        shared["injected_defects_list"] = dg.MetadataValue.md(markdown_table(truth, limit=100))
    for session in report.sessions:
        context.add_asset_metadata(
            {
                "rows": session.rows,
                "symbols": session.symbols,
                "symbols_missing": len(session.symbols_missing),
                "symbols_missing_list": preview(session.symbols_missing),
                "path": location(session.path),
                "dagster/row_count": session.rows,
            },
            partition_key=session.key,
        )
    context.log.info(
        f"{report.source}: {report.rows:,} rows over {len(sessions)} session(s) in "
        f"{cost.duration_s:.1f}s, peak RSS {cost.peak_rss_mb:.0f} MiB"
    )
    return dg.MaterializeResult(metadata=shared)


def _run_id(context: dg.AssetExecutionContext) -> str | None:
    """The run id for the rejected-inputs log (none when the asset is invoked directly)."""
    try:
        return context.run.run_id
    except dg.DagsterError:  # invoked directly, outside any run
        return None


def _run_metadata(report: IngestReport, cost, n_sessions: int) -> dict:
    served = set(report.fallback_symbols)
    failed = {s: r for s, r in report.failures_by_symbol().items() if s not in served}
    return {
        "source": report.source,
        "symbols_failed": len(failed),
        "symbols_from_fallback": len(served),
        "symbols_failed_why": dg.MetadataValue.md(_rejections_table(report.rejections)),
        "fallback_symbols": preview(report.fallback_symbols),
        "warnings": dg.MetadataValue.md("\n".join(f"- {w}" for w in report.warnings) or "_none_"),
        "provider_requests": report.requests,
        "sessions_in_run": n_sessions,
        "rows_in_run": report.rows,
        **cost.as_metadata(),
    }


def _rejections_table(rejections) -> str:
    frame = pd.DataFrame([r.to_record() for r in rejections])
    order = [c for c in ("symbol", "rule", "file", "line", "column", "value", "reason") if c in frame.columns]
    return markdown_table(frame[order] if order else frame, limit=50)


@dg.asset_check(
    asset=raw_ohlcv,
    name=CHECK_SOURCES_AGREE,
    description="Closes, volumes, dividends and splits agree with the secondary source within tolerance.",
)
def sources_agree(
    context: dg.AssetCheckExecutionContext, market_data: MarketDataResource, storage: StorageResource
) -> dg.AssetCheckResult:
    """Compare the stored raw bars of this run's sessions with a second provider, row by row."""
    sessions = sessions_of(context)
    primary = storage.store().read_partitions(RAW, sessions[0], sessions[-1])
    secondary = market_data.build_secondary_source()
    fetched = secondary.fetch(sorted(primary["symbol"].unique()), sessions)
    disagreements = reconcile(primary, fetched.bars)
    overlap = primary.merge(fetched.bars[["symbol", "date"]], on=["symbol", "date"]).shape[0]
    return dg.AssetCheckResult(
        passed=disagreements.empty,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{len(disagreements)} disagreement(s) over {overlap} overlapping rows with {secondary.describe()}",
        metadata={
            "overlapping_rows": overlap,
            "disagreements": len(disagreements),
            "details": dg.MetadataValue.md(markdown_table(disagreements, limit=100)),
        },
    )


def reconciliation_checks() -> list:
    """The reconciliation check exists only when a second source is configured."""
    return [sources_agree] if os.environ.get("ALPHATWIN_SECONDARY_SOURCE") else []
