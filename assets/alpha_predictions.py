"""Alpha predictions: nightly scores, ranks and SHAP top-3 explanations from the model current at each session."""

import dagster as dg

from alphatwin_pipelines.partition_keys import session_key
from alphatwin_pipelines.profiling import measure
from alphatwin_pipelines.tables import ALPHA_MODELS, ALPHA_PREDICTIONS, FEATURES, MissingUpstreamError
from assets.partitions import nyse_sessions, sessions_of
from assets.resources import StorageResource

CHECK_NO_LEAKAGE = "model_trained_before_prediction"


@dg.asset(
    name=ALPHA_PREDICTIONS, deps=[FEATURES, ALPHA_MODELS], group_name="alpha", kinds={"parquet", "shap"},
    partitions_def=nyse_sessions, backfill_policy=dg.BackfillPolicy.single_run(),
    description="Score and rank of every listed symbol per horizon from the model version current at the session, "
                "with the three features that drove each score (SHAP / coefficient x standardised value).",
    check_specs=[dg.AssetCheckSpec(CHECK_NO_LEAKAGE, asset=ALPHA_PREDICTIONS, blocking=True,
                                   description="Every prediction at t comes from a registered model whose training "
                                               "labels were all available before t.")],
)
def alpha_predictions(context: dg.AssetExecutionContext, storage: StorageResource):
    from alphatwin_pipelines.alpha.catalogue import AlphaModelError, leakage_violations, read_models
    from alphatwin_pipelines.alpha.dataset import AlphaInputError
    from alphatwin_pipelines.reporting import markdown_table
    from alphatwin_pipelines.stages.alpha_predictions import predict_sessions

    store, sessions = storage.store(), sessions_of(context)
    with measure() as cost:
        try:
            report = predict_sessions(store, sessions)
        except (MissingUpstreamError, AlphaInputError, AlphaModelError) as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
    for session, rows in report.rows.items():
        context.add_asset_metadata({"rows": rows, "dagster/row_count": rows,
                                    "model_versions": ", ".join(report.versions[session]) or "none trained by then"},
                                   partition_key=session_key(session))
    if report.without_model:
        context.log.warning(f"{len(report.without_model)} session(s) have no model trained before them (first "
                            f"{report.without_model[0]:%Y-%m-%d}): their partitions are empty; materialise "
                            f"{ALPHA_MODELS} with an earlier as_of to cover them")
    yield dg.MaterializeResult(metadata={"sessions_without_model": len(report.without_model), **cost.as_metadata()})
    written = store.read_partitions(ALPHA_PREDICTIONS, sessions[0], sessions[-1])
    bad = leakage_violations(written, read_models(store))
    yield dg.AssetCheckResult(check_name=CHECK_NO_LEAKAGE, passed=bad.empty,
                              metadata={"predictions": len(written), "violations": len(bad),
                                        "examples": dg.MetadataValue.md(markdown_table(bad.head(10)))})
