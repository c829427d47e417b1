"""dbt marts: DuckDB tables over every stage's Parquet output, drawn in the same lineage.

The dbt project lives in ``dbt/``. Loading the code location only reads its
``target/manifest.json``, which ``make setup`` writes with ``dbt parse`` whenever a file under
``dbt/`` changed; dbt runs only inside a run. dbt data tests become asset checks.
"""

import json
import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets
from dagster_dbt.errors import DagsterDbtCliRuntimeError

from alphatwin_pipelines.data_dir import state_dir
from alphatwin_pipelines.objectstore import is_remote
from assets.resources import DBT_PROJECT_DIR, StorageResource

MARTS_GROUP = "marts"
#: DuckDB takes one writer per file: every run that builds the marts queues on this pool
#: (its limit is set in dagster.yaml, ``concurrency.pools``).
DUCKDB_POOL = "duckdb"

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)

if not dbt_project.manifest_path.exists():
    raise FileNotFoundError(
        f"dbt manifest not found at {dbt_project.manifest_path}: run `make setup` "
        f"(or `cd dbt && ../.venv/bin/dbt parse --profiles-dir .`) before loading the code location"
    )


class PipelineTablesTranslator(DagsterDbtTranslator):
    """Sources are the pipeline's own assets (``raw_ohlcv``, …, ``portfolio_allocations``), so
    the marts hang off them instead of off separate dbt source nodes."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey(dbt_resource_props["name"])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return MARTS_GROUP

    def get_partition_mapping(self, dbt_resource_props, dbt_parent_resource_props) -> dg.PartitionMapping | None:
        # The marts are unpartitioned and read every stored session of a partitioned table:
        # say so, rather than leave Dagster to infer it.
        if dbt_parent_resource_props.get("meta", {}).get("partitioned"):
            return dg.AllPartitionMapping()
        return None


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=PipelineTablesTranslator(),
    name="marts",
    pool=DUCKDB_POOL,
)
def marts(context: dg.AssetExecutionContext, dbt: DbtCliResource, storage: StorageResource):
    """``dbt build`` of the selected models: staging views, mart tables, unit and data tests.

    The sources read the data directory (a folder or s3://); ``marts.duckdb`` is written to the local
    state directory, which is the data directory itself when that is local (dbt/profiles.yml)."""
    data_dir = storage.path()
    dbt_vars = {"data_dir": str(data_dir), "state_dir": str(state_dir(data_dir))}
    try:
        yield from dbt.cli(["build", "--vars", json.dumps(dbt_vars)], context=context).stream()
    except DagsterDbtCliRuntimeError as exc:
        if not is_remote(data_dir):
            raise
        raise dg.Failure(description=(
            f"{exc.description}\n\nThe sources are read from {data_dir} at "
            f"{os.environ.get('AWS_ENDPOINT_URL') or 'AWS'}: if the errors above say the store could not be "
            f"reached or refused a request (EndpointConnectionError, AccessDenied, NoSuchBucket), check "
            f"AWS_ENDPOINT_URL, the AWS_* credentials and the bucket, then materialise the marts again. A model "
            f"that failed kept its previous table in {dbt_vars['state_dir']}/marts.duckdb.")) from exc
