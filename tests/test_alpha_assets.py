"""The alpha assets end to end on the research fixture (40 synthetic symbols, 2023-2024):
labels over a range, a model per horizon registered in MLflow on SQLite, predictions of the
last session, each materialised twice with the same stored bytes."""

from __future__ import annotations

import hashlib

import dagster as dg
import pandas as pd
import pytest

from alphatwin_pipelines.alpha.catalogue import read_models
from alphatwin_pipelines.alpha.predict import PREDICTION_COLUMNS
from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import ALPHA_LABELS, ALPHA_MODELS, ALPHA_PREDICTIONS
from assets.alpha_labels import CHECK_KNOWN_AT_PARTITION, alpha_labels
from assets.alpha_models import CHECK_TRAINED_BEFORE_CUTOFF, alpha_models
from assets.alpha_predictions import CHECK_NO_LEAKAGE, alpha_predictions
from assets.resources import MlflowResource, OptunaResource, StorageResource

LABEL_START, LAST = "2024-06-03", "2024-12-31"
TRAINING = {"horizons": [1, 5], "train_sessions": 40, "folds": 3, "n_trials": 2, "n_estimators": 10}


def _resources(data_dir, mlflow_uri=None):
    return {"storage": StorageResource(data_dir=str(data_dir)), "optuna": OptunaResource(),
            "mlflow": MlflowResource(tracking_uri=mlflow_uri)}


def _range(start, end):
    return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}


def _files(folder) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.parquet"))}


def _checks(result) -> dict:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def alpha_dir(research_data, tmp_path_factory):
    import shutil

    path = tmp_path_factory.mktemp("alpha") / "data"
    shutil.copytree(research_data, path)
    return path


def test_labels_models_and_predictions_materialise_twice_with_the_same_content(alpha_dir, instance):
    store = TableStore(alpha_dir)
    runs = {}
    for attempt in (1, 2):
        labels = dg.materialize([alpha_labels], resources=_resources(alpha_dir), instance=instance,
                                tags=_range(LABEL_START, LAST))
        assert labels.success and _checks(labels) == {CHECK_KNOWN_AT_PARTITION: True}
        models = dg.materialize([alpha_models], resources=_resources(alpha_dir), instance=instance,
                                run_config={"ops": {ALPHA_MODELS: {"config": TRAINING}}})
        assert models.success and _checks(models) == {CHECK_TRAINED_BEFORE_CUTOFF: True}
        predictions = dg.materialize([alpha_predictions], resources=_resources(alpha_dir), instance=instance,
                                     partition_key=LAST)
        assert predictions.success and _checks(predictions) == {CHECK_NO_LEAKAGE: True}
        runs[attempt] = (_files(store.table_dir(ALPHA_LABELS)), store.whole_path(ALPHA_MODELS).read_bytes(),
                         _files(store.table_dir(ALPHA_PREDICTIONS)))
    assert runs[1] == runs[2]

    labels = store.read_partitions(ALPHA_LABELS)
    assert list(labels.columns) == ["date", "symbol", "horizon", "fwd_return", "available"]
    assert sorted(labels["horizon"].unique()) == [1, 5, 20]
    assert len(store.stored_sessions(ALPHA_LABELS)) == len(sessions_between(LABEL_START, LAST))

    models = read_models(store)
    assert sorted(models["horizon"]) == [1, 5] and (models["cutoff"] == pd.Timestamp(LAST)).all()
    assert (models["labels_known_through"] < models["cutoff"]).all()
    assert models["registry_version"].tolist() == ["1", "1"]  # the second run found its versions, registered none
    predictions = store.read_partitions(ALPHA_PREDICTIONS)
    assert list(predictions.columns) == list(PREDICTION_COLUMNS)
    assert set(predictions["model_version"]) == set(models["model_version"])
    for _, group in predictions.groupby("horizon"):
        assert sorted(group["rank"]) == list(range(1, len(group) + 1))
        assert group["symbol"].is_unique and len(group) >= 30
    assert predictions["explanation"].str.count(r" (low|mid|high|missing) \(").eq(3).all()

    # the MLflow registry holds each version with its metrics and artifact
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{alpha_dir / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for _, row in models.iterrows():
        registered = client.get_model_version(row["registry_name"], row["registry_version"])
        run = client.get_run(registered.run_id)
        assert run.data.metrics["cv_rank_ic"] == pytest.approx(row["cv_rank_ic"])
        assert run.data.tags["alphatwin_version"] == row["model_version"]
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"model", "feature_importance.json", "record.json"}


def test_unreachable_registry_fails_naming_the_uri_and_keeps_the_models_table(alpha_dir, instance):
    store = TableStore(alpha_dir)
    before = store.whole_path(ALPHA_MODELS).read_bytes() if store.whole_path(ALPHA_MODELS).exists() else None
    uri = "postgresql://alpha:secret@127.0.0.1:1/mlflow"
    result = dg.materialize([alpha_models], resources=_resources(alpha_dir, mlflow_uri=uri), instance=instance,
                            run_config={"ops": {ALPHA_MODELS: {"config": {**TRAINING, "horizons": [1]}}}},
                            raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    data = failure.step_failure_data
    text = data.user_failure_data.description if data.user_failure_data else data.error.message
    assert "postgresql://alpha:***@127.0.0.1:1/mlflow" in text and "secret" not in text
    after = store.whole_path(ALPHA_MODELS).read_bytes() if store.whole_path(ALPHA_MODELS).exists() else None
    assert after == before
