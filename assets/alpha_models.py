"""Alpha models: LightGBM and a linear baseline, selected by purged K-fold CV in a seeded Optuna
study, registered in MLflow; one version per horizon and weekly run."""

import dataclasses

import dagster as dg

from alphatwin_pipelines.alpha.training import AlphaTrainingConfig
from alphatwin_pipelines.profiling import measure
from alphatwin_pipelines.reporting import markdown_table
from alphatwin_pipelines.tables import ALPHA_LABELS, ALPHA_MODELS, FEATURES
from assets.config import config_from_dataclass, dataclass_from_config
from assets.resources import MlflowResource, OptunaResource, StorageResource

CHECK_TRAINED_BEFORE_CUTOFF = "trained_on_labels_known_before_cutoff"


class AlphaModelsRunConfig(config_from_dataclass(AlphaTrainingConfig)):
    """Training window, CV and study budget (the fields of ``AlphaTrainingConfig``); ``as_of`` sets
    the cutoff (labels known strictly before it), empty means the latest feature session."""


@dg.asset(
    name=ALPHA_MODELS, deps=[FEATURES, ALPHA_LABELS], group_name="alpha", kinds={"lightgbm", "scikitlearn", "mlflow"},
    description="Every model version (one per horizon and cutoff) with its CV metrics, content hash, reproducibility "
                "record, artifact and MLflow registry version.",
    check_specs=[dg.AssetCheckSpec(CHECK_TRAINED_BEFORE_CUTOFF, asset=ALPHA_MODELS, blocking=True,
                                   description="Each version's latest training label became known before its cutoff.")],
)
def alpha_models(context: dg.AssetExecutionContext, config: AlphaModelsRunConfig, storage: StorageResource,
                 optuna: OptunaResource, mlflow: MlflowResource):
    from alphatwin_pipelines.alpha.catalogue import AlphaModelError
    from alphatwin_pipelines.alpha.dataset import AlphaInputError
    from alphatwin_pipelines.alpha.registry import RegistryError, redact
    from alphatwin_pipelines.stages.alpha_models import train_models

    settings = dataclass_from_config(AlphaTrainingConfig, config)
    settings = dataclasses.replace(settings, as_of=settings.as_of or None)  # an empty launchpad field: the latest
    uri = mlflow.uri(storage)
    try:
        with measure() as cost:
            report = train_models(storage.store(), settings, optuna.url(storage), uri, logger=context.log)
    except (AlphaInputError, AlphaModelError, RegistryError, ValueError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    rows = report.rows
    shown = rows[["model_version", "horizon", "kind", "train_start", "train_end", "train_rows", "cv_rank_ic",
                  "baseline_cv_rank_ic", "cv_rank_icir", "registry_version"]]
    yield dg.MaterializeResult(metadata={
        "cutoff": f"{report.cutoff:%Y-%m-%d}", "versions": dg.MetadataValue.md(markdown_table(shown.round({"cv_rank_ic": 4, "baseline_cv_rank_ic": 4, "cv_rank_icir": 3}))),
        "versions_stored": len(report.table), "trials_run": report.trials_run,
        "mlflow_uri": redact(uri), **cost.as_metadata()})
    late = rows[rows["labels_known_through"] >= rows["cutoff"]]
    yield dg.AssetCheckResult(check_name=CHECK_TRAINED_BEFORE_CUTOFF, passed=late.empty,
                              metadata={"versions": len(rows), "late": dg.MetadataValue.json(list(late["model_version"]))})
