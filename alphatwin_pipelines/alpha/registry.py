"""The MLflow tracking server and model registry (``mlflow-skinny`` is enough: its SQL store
runs on SQLite or PostgreSQL through SQLAlchemy, and the registry shares that store).

Default: ``sqlite:///<state_dir>/mlflow.db`` with artifacts under ``<data_dir>/mlruns``; in
deployment ``ALPHATWIN_MLFLOW_URI`` names the Postgres database or the compose ``mlflow``
server. The URI may hold a password: errors and metadata show it redacted. With the data
directory on an object store the artifacts go to ``s3://.../mlruns`` through MLflow's S3
artifact repository (boto3), which reads the same ``AWS_ENDPOINT_URL`` and credentials
(``MLFLOW_S3_ENDPOINT_URL``, when set, overrides the endpoint for MLflow alone).
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from alphatwin_pipelines.data_dir import state_dir
from alphatwin_pipelines.objectstore import is_remote

EXPERIMENT = "alphatwin-alpha-models"
MODEL_NAME = "alphatwin-alpha-h{horizon}"
VERSION_TAG = "alphatwin_version"


class RegistryError(RuntimeError):
    """The MLflow tracking/registry store cannot be reached or refused a write."""


def default_tracking_uri(data_dir) -> str:
    return f"sqlite:///{state_dir(data_dir) / 'mlflow.db'}"


def redact(uri: str) -> str:
    """``uri`` with any password replaced by ``***``."""
    parts = urlsplit(uri)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return uri


@contextmanager
def _fail_fast():
    """An unreachable HTTP server fails in seconds instead of MLflow's minutes of retries."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def normalise_uri(uri: str) -> str:
    """``postgresql://`` through psycopg2 (installed), not SQLAlchemy 2.1's default psycopg 3."""
    return "postgresql+psycopg2://" + uri.removeprefix("postgresql://") if uri.startswith("postgresql://") else uri


def check_reachable(uri: str) -> None:
    """Raise ``RegistryError`` naming the (redacted) URI unless the store answers: called before
    training, so an unreachable registry costs seconds, not a whole search."""
    with _fail_fast():
        _client(uri)


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    try:
        _probe_database(normalise_uri(uri))
        client = MlflowClient(tracking_uri=normalise_uri(uri), registry_uri=normalise_uri(uri))
        client.search_experiments(max_results=1)
    except Exception as exc:  # any driver, HTTP or schema error: the store is not usable
        raise RegistryError(f"MLflow tracking/registry store {redact(uri)} cannot be reached ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); start it or point "
                            "ALPHATWIN_MLFLOW_URI at a reachable one (default: sqlite under the data directory)") from exc
    return client


def _probe_database(uri: str) -> None:
    """Connect once to a database URI: MLflow itself retries a refused connection for minutes."""
    if uri.startswith(("http://", "https://", "file:", "databricks")) or "://" not in uri:
        return
    import sqlalchemy

    args = {"connect_timeout": 5} if uri.startswith("postgresql") else {}
    engine = sqlalchemy.create_engine(uri, connect_args=args)
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()


def _experiment(client, uri: str, artifact_root) -> str:
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return found.experiment_id
    # An HTTP server stores artifacts where it is configured to; a database URI needs a location.
    if uri.startswith(("http://", "https://")):
        location = None
    else:
        location = str(artifact_root) if is_remote(artifact_root) else Path(artifact_root).resolve().as_uri()
    return client.create_experiment(EXPERIMENT, artifact_location=location)


def register(uri: str, artifact_root, version, artifact: Path) -> tuple[str, str]:
    """Log ``version`` (a ``training.ModelVersion``) as an MLflow run with its parameters, CV
    metrics, feature importance, record and model artifact, and register it as a version of
    ``alphatwin-alpha-h<horizon>``. Idempotent: a version already logged is found by its tag.
    Returns (run id, registry version)."""
    with _fail_fast():
        client = _client(uri)
        try:
            return _register(client, uri, artifact_root, version, artifact)
        except RegistryError:
            raise
        except Exception as exc:
            raise RegistryError(f"MLflow store {redact(uri)} refused model version {version.version}: "
                                f"{type(exc).__name__}: {exc}") from exc


def _register(client, uri, artifact_root, version, artifact) -> tuple[str, str]:
    experiment = _experiment(client, uri, artifact_root)
    name = MODEL_NAME.format(horizon=version.horizon)
    runs = client.search_runs([experiment], filter_string=f"tags.{VERSION_TAG} = '{version.version}'", max_results=1)
    if runs:
        run_id = runs[0].info.run_id
    else:
        run = client.create_run(experiment, run_name=version.version, tags={VERSION_TAG: version.version,
                                                                           "horizon": str(version.horizon)})
        run_id = run.info.run_id
        params = {"horizon": version.horizon, "cutoff": version.record["cutoff"], **version.found.params,
                  "train_start": version.record["train_start"], "train_end": version.record["train_end"],
                  "features": len(version.data.names), "study": version.found.study_name}
        for key, value in params.items():
            client.log_param(run_id, key, value)
        score, base = version.found.score, version.found.baseline
        for key, value in {"cv_rank_ic": score.rank_ic, "cv_ic": score.ic, "cv_rank_icir": score.rank_icir,
                           "baseline_cv_rank_ic": base.rank_ic, "train_rows": version.data.rows}.items():
            if value == value:  # NaN metrics are not logged
                client.log_metric(run_id, key, float(value))
        with tempfile.TemporaryDirectory() as tmp:
            for fname, payload in (("feature_importance.json", version.importance), ("record.json", version.record)):
                (Path(tmp) / fname).write_text(json.dumps(payload, indent=1, sort_keys=True))
                client.log_artifact(run_id, str(Path(tmp) / fname))
            if is_remote(artifact):  # MLflow logs local files: the object's copy goes up under its name
                (Path(tmp) / artifact.name).write_bytes(artifact.read_bytes())
                artifact = Path(tmp) / artifact.name
            client.log_artifact(run_id, str(artifact), artifact_path="model")
        client.set_terminated(run_id)
    try:
        client.create_registered_model(name)
    except Exception:  # already registered
        pass
    found = client.search_model_versions(f"run_id = '{run_id}'")
    if found:
        return run_id, str(found[0].version)
    created = client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id,
                                          tags={VERSION_TAG: version.version})
    return run_id, str(created.version)
