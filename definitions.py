"""The AlphaTwin code location. Dagster loads this file from the repository root (workspace.yaml)."""

import warnings

import dagster as dg

# Single-run backfill policies are marked beta; the warning would print on every CLI call.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

# Before any run is created or executed in this process (the instance's storage class applies the same
# in processes that load no code, such as the webserver and the daemon): see assets/instance.py.
from assets import instance  # noqa: F401

from assets import (
    alpha_labels, alpha_models, alpha_predictions, alpha_report, cards, cleaning, features, ingestion, marts, portfolio, quality, scanner,
    strategies, symbol_index, validation,
)
from assets.resources import default_resources
from jobs.execution import paper_execution_job
from jobs.scan import (
    drop_folder_ingest_job, nightly_scan_job, symbol_index_job, weekly_alpha_training_job, weekly_optimisation_job,
)
from schedules.drop_folder import drop_folder_sensor
from schedules.execution import paper_execution_sensor
from schedules.failures import run_failure_recorder
from schedules.scan import (
    daily_tables_freshness, freshness_check_job, freshness_schedule, nightly_scan_schedule, weekly_alpha_training_schedule,
    weekly_optimisation_schedule,
)
from schedules.symbol_index import symbol_index_after_backfill, weekly_symbol_index_schedule

STAGES = [ingestion, quality, cleaning, features, scanner, alpha_labels, alpha_models, alpha_predictions, alpha_report,
          strategies,
          validation, cards, portfolio, marts, symbol_index]

defs = dg.Definitions(
    assets=dg.load_assets_from_modules(STAGES),
    asset_checks=[*ingestion.reconciliation_checks(), daily_tables_freshness],
    jobs=[nightly_scan_job, weekly_optimisation_job, weekly_alpha_training_job, drop_folder_ingest_job, freshness_check_job, paper_execution_job,
          symbol_index_job],
    schedules=[nightly_scan_schedule, weekly_optimisation_schedule, weekly_alpha_training_schedule, freshness_schedule,
               weekly_symbol_index_schedule],
    sensors=[drop_folder_sensor, paper_execution_sensor, run_failure_recorder, symbol_index_after_backfill],
    resources=default_resources(),
    # The graph is a chain and every step is vectorised: running steps in the run's own process
    # saves each step a fresh interpreter and re-import (seconds per step on two cores).
    executor=dg.in_process_executor,
)
