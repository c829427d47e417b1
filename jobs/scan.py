"""Jobs that schedules and sensors launch: the nightly scan, the weekly alpha training and optimisation, drop-folder ingestion."""

from pathlib import Path

import dagster as dg
import pandas as pd

from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.drop_folder import DropFileError, ingest_dropped
from alphatwin_pipelines.ingest import IngestError
from alphatwin_pipelines.tables import (
    ALLOCATIONS, ALPHA_LABELS, ALPHA_MODELS, ALPHA_PREDICTIONS, CLEANED, FACTORS, FEATURES, OPTIMISED, QUARANTINED,
    RAW, SCANNER, SECTOR_ROTATION, SYMBOL_CONTEXT,
    STRATEGY_POSITIONS, STRATEGY_RETURNS, SYMBOL_INDEX, TOP_PAIRS, UNIVERSE, VALIDATED, VALIDATION,
)
from assets.locations import location
from assets.resources import StorageResource

NIGHTLY_SCAN_ASSETS = [RAW, VALIDATED, QUARANTINED, FACTORS, CLEANED, FEATURES, SCANNER, SYMBOL_CONTEXT,
                       SECTOR_ROTATION, TOP_PAIRS, ALPHA_LABELS, ALPHA_PREDICTIONS]
# validation_reports is one step with the return streams and positions it writes beside it.
WEEKLY_OPTIMISATION_ASSETS = [OPTIMISED, VALIDATION, STRATEGY_RETURNS, STRATEGY_POSITIONS, ALLOCATIONS]

nightly_scan_job = dg.define_asset_job(
    "nightly_scan_job",
    selection=dg.AssetSelection.assets(*NIGHTLY_SCAN_ASSETS),  # partitioned by nyse_sessions, inferred
    description="One NYSE session from raw bars to scanner results, sector rotation and pairs.",
)

weekly_alpha_training_job = dg.define_asset_job(
    "weekly_alpha_training_job",
    selection=dg.AssetSelection.assets(ALPHA_MODELS),
    description="Retrain the alpha models on the rolling window of labels known before the latest session.",
)

weekly_optimisation_job = dg.define_asset_job(
    "weekly_optimisation_job",
    selection=dg.AssetSelection.assets(*WEEKLY_OPTIMISATION_ASSETS),
    description="Re-optimise strategies on the week's data, validate them and re-allocate the portfolio.",
)

symbol_index_job = dg.define_asset_job(
    "symbol_index_job",
    selection=dg.AssetSelection.assets(SYMBOL_INDEX),
    description="Bring the per-symbol history index up to date (weekly, and after each backfill of the daily tables).",
)


class DropIngestConfig(dg.Config):
    """Set by the drop-folder sensor: which files (name -> sha256) and the sessions they cover."""

    folder: str
    files: dict[str, str]
    first_session: str
    last_session: str


@dg.op(out={}, description="Merge dropped CSV files into the raw_ohlcv partitions of the sessions they cover.")
def ingest_dropped_files(context: dg.OpExecutionContext, config: DropIngestConfig, storage: StorageResource):
    store = storage.store()
    sessions = sessions_between(config.first_session, config.last_session)
    try:
        universe = store.read_table(UNIVERSE, columns=["symbol"])["symbol"].tolist()
        report, outside = ingest_dropped(store, Path(config.folder), config.files, sessions, universe,
                                         run_id=context.run_id)
    except (DropFileError, IngestError, FileNotFoundError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    if outside:
        context.log.warning(f"ignored {len(outside)} symbol(s) outside the universe: {', '.join(outside[:20])}; "
                            "add them to ALPHATWIN_UNIVERSE and materialise universe to ingest them")
    for warning in report.warnings:
        context.log.warning(warning)
    for session in report.sessions:
        yield dg.AssetMaterialization(
            asset_key=RAW,
            partition=session.key,
            description=f"merged {', '.join(config.files)} from the drop folder",
            metadata={"rows": session.rows, "symbols": session.symbols, "path": location(session.path),
                      "dagster/row_count": session.rows},
        )
    context.log.info(f"merged {len(config.files)} file(s) into {len(report.sessions)} session(s) "
                     f"{pd.Timestamp(sessions[0]):%Y-%m-%d}..{pd.Timestamp(sessions[-1]):%Y-%m-%d}; "
                     f"{len(report.rejections)} row(s) rejected (see rejected_inputs.jsonl)")


@dg.job(description="Ingest CSV files dropped into ALPHATWIN_DROP_DIR (launched by drop_folder_sensor).")
def drop_folder_ingest_job():
    ingest_dropped_files()
