"""The AlphaTwin code location. Dagster loads this file from the repository root (workspace.yaml)."""

import warnings

import dagster as dg

# Single-run backfill policies are marked beta; the warning would print on every CLI call.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

from assets import cleaning, features, ingestion, quality, scanner
from assets.resources import default_resources

STAGES = [ingestion, quality, cleaning, features, scanner]

defs = dg.Definitions(
    assets=dg.load_assets_from_modules(STAGES),
    asset_checks=[*ingestion.reconciliation_checks()],
    resources=default_resources(),
    # The graph is a chain and every step is vectorised: running steps in the run's own process
    # saves each step a fresh interpreter and re-import (seconds per step on two cores).
    executor=dg.in_process_executor,
)
