"""The AlphaTwin code location. Dagster loads this file from the repository root (workspace.yaml)."""

import dagster as dg

from assets import ingestion
from assets.resources import default_resources

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingestion]),
    resources=default_resources(),
)
