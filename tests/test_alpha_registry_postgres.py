"""The MLflow registry on a real PostgreSQL database, as deployed (``ALPHATWIN_MLFLOW_URI``):
mlflow-skinny's SQL store creates its schema, logs a model version's run and registers it;
registering the same version again finds it instead of adding another."""

from __future__ import annotations

import pandas as pd
import pytest

from alphatwin_pipelines.alpha.catalogue import write_artifact
from alphatwin_pipelines.alpha.registry import MODEL_NAME, register
from alphatwin_pipelines.alpha.training import AlphaTrainingConfig, train_version
from alphatwin_pipelines.storage import TableStore
from postgres_support import PG_HOST, PG_PASSWORD, PG_PORT, PG_USER, pg_db  # noqa: F401  (pg_db is a fixture)
from tests.alpha_support import NAMES, planted_panel

pytestmark = pytest.mark.slow


def test_a_model_version_is_logged_and_registered_once_in_postgres(pg_db, tmp_path):
    features, labels = planted_panel(n_symbols=20, sessions=60)
    cutoff = pd.Timestamp(sorted(features["date"].unique())[50])
    settings = AlphaTrainingConfig(horizons=(1,), train_sessions=40, n_trials=1, n_estimators=5)
    version = train_version(features, labels, 1, cutoff, NAMES, settings, f"sqlite:///{tmp_path / 'optuna.db'}")
    store = TableStore(tmp_path / "data")
    artifact = write_artifact(store, version.version, version.artifact_bytes())
    auth = f"{PG_USER}:{PG_PASSWORD}@" if PG_PASSWORD else f"{PG_USER}@"
    uri = f"postgresql://{auth}{PG_HOST}:{PG_PORT}/{pg_db}"  # plain postgresql:// goes through psycopg2

    run_id, registered = register(uri, tmp_path / "mlruns", version, artifact)
    assert register(uri, tmp_path / "mlruns", version, artifact) == (run_id, registered) == (run_id, "1")

    from mlflow.tracking import MlflowClient

    from alphatwin_pipelines.alpha.registry import normalise_uri

    client = MlflowClient(tracking_uri=normalise_uri(uri), registry_uri=normalise_uri(uri))
    found = client.get_model_version(MODEL_NAME.format(horizon=1), "1")
    assert found.run_id == run_id and found.tags["alphatwin_version"] == version.version
    run = client.get_run(run_id)
    assert run.data.params["kind"] == version.found.params["kind"]
    assert run.data.metrics["cv_rank_ic"] == pytest.approx(version.found.score.rank_ic)
    assert (tmp_path / "mlruns").is_dir() and any((tmp_path / "mlruns").rglob(f"{version.version}.pkl"))
