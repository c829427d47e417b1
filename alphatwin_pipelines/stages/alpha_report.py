"""Alpha factor report stage: ``alpha_predictions`` + ``alpha_labels`` (+ ``universe`` sectors) in;
the ``alpha_factor_report`` table, PNG plots and an HTML page out.

The report is as of one session (default: the latest stored prediction). Only labels whose
``available`` session is on or before it are read into the computation, so re-running the report
as of a past session gives the same figures whatever was stored later. The table is replaced whole
(atomically) and the files under ``<data_dir>/reports/alpha_factor/<as_of>/`` are each replaced
atomically: re-running is safe and gives the same content.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from alphatwin_pipelines.alpha.factor_plots import write_report_files
from alphatwin_pipelines.alpha.factor_report import (
    LABEL_COLUMNS, PREDICTION_COLUMNS, FactorReport, FactorReportSettings, factor_report,
)
from alphatwin_pipelines.schema import frame_to_arrow
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import ALPHA_FACTOR_REPORT, ALPHA_LABELS, ALPHA_PREDICTIONS, UNIVERSE, stored_path

REPORT_FOLDER = "reports/alpha_factor"


@dataclass
class AlphaReportRun:
    report: FactorReport
    files: dict[str, Path]
    rows: int


def _stored(store: TableStore, table: str) -> pd.DatetimeIndex:
    sessions = store.stored_sessions(table)
    if len(sessions) == 0:
        raise FileNotFoundError(f"{table} has no partitions under {store.data_dir}: materialise {table} first")
    return sessions


def read_inputs(store: TableStore, settings: FactorReportSettings):
    """Predictions up to the as-of session, the labels known by then, and the sectors."""
    predictions_stored = _stored(store, ALPHA_PREDICTIONS)
    _stored(store, ALPHA_LABELS)
    as_of = pd.Timestamp(settings.as_of) if settings.as_of else predictions_stored[-1]
    predictions = store.read_partitions(ALPHA_PREDICTIONS, end=as_of, columns=list(PREDICTION_COLUMNS))
    # Every partition is read (whether alpha_labels keys a label by its session or by the session it
    # became available), and only labels available by as_of are kept.
    labels = store.read_partitions(ALPHA_LABELS, columns=list(LABEL_COLUMNS))
    labels = labels[pd.to_datetime(labels["available"]) <= as_of] if len(labels) else labels
    try:
        sectors = store.read_table(UNIVERSE, columns=["symbol", "sector"])
    except FileNotFoundError:
        sectors = None  # every symbol reports under the sector "Unknown"
    return predictions, labels, sectors, replace(settings, as_of=f"{as_of:%Y-%m-%d}")


def build_alpha_factor_report(store: TableStore, settings: FactorReportSettings = FactorReportSettings()) -> AlphaReportRun:
    predictions, labels, sectors, settings = read_inputs(store, settings)
    if len(labels) == 0:
        raise ValueError(f"{ALPHA_LABELS} holds no label available by {settings.as_of}: materialise "
                         f"{ALPHA_LABELS} for earlier sessions or choose a later as_of")
    report = factor_report(predictions, labels, sectors, settings)
    folder = store.data_dir / REPORT_FOLDER / f"{report.as_of:%Y-%m-%d}"
    files = write_report_files(report, folder)
    table = report.to_table()
    table["report_path"] = stored_path(store, files["html"])
    store.write_table(ALPHA_FACTOR_REPORT, frame_to_arrow(table))
    return AlphaReportRun(report=report, files=files, rows=len(table))
