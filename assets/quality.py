"""Quality stage: validated and quarantined OHLCV, with blocking checks shown in the UI.

The checks run inside the validation step (they are ``check_specs``), so when one fails with
ERROR severity Dagster stops every downstream asset of that run: nothing is built from a bad
partition. Each check covers the sessions of its run and lists the failing cases as a table.
"""

import dagster as dg
import pandas as pd

from alphatwin_pipelines.profiling import measure
from alphatwin_pipelines.quality import rule_table_markdown
from alphatwin_pipelines.reporting import markdown_table
from alphatwin_pipelines.stages.quality import residual_errors, schema_failures, session_gaps, validate_sessions
from alphatwin_pipelines.tables import QUARANTINED, RAW, VALIDATED, MissingUpstreamError
from assets.partitions import nyse_sessions, sessions_of
from assets.resources import StorageResource

CHECK_SCHEMA = "pandera_schema"
CHECK_PASS_RATE = "pass_rate_above_threshold"
CHECK_NO_ERROR_ROWS = "no_error_rule_rows_remain"
CHECK_NO_MISSING_SESSIONS = "no_missing_sessions"
CHECK_GX_SUITE = "great_expectations_suite"

_CHECKS = {
    CHECK_SCHEMA: "Validated rows match the pandera schema: exact dtypes, positive prices, OHLC order, unique keys.",
    CHECK_PASS_RATE: "Each session keeps at least the configured share of its raw rows.",
    CHECK_NO_ERROR_ROWS: "Re-running every rule over the validated rows finds no ERROR-severity violation.",
    CHECK_NO_MISSING_SESSIONS: "No listed symbol misses a session; gaps the cleaner may fill are warnings, longer gaps errors.",
    CHECK_GX_SUITE: "The great-expectations suite passes; the check links to its Data Docs.",
}


class ValidationConfig(dg.Config):
    """Thresholds for the validation checks."""

    pass_rate_threshold: float = 0.99
    fillable_gap_sessions: int = 3


@dg.multi_asset(
    specs=[
        dg.AssetSpec(VALIDATED, deps=[RAW], group_name="quality", kinds={"parquet", "pandera"},
                     description="Raw rows that pass every ERROR rule; WARNING rules listed in `flags`.",
                     metadata={"rules": dg.MetadataValue.md(rule_table_markdown())}),
        dg.AssetSpec(QUARANTINED, deps=[RAW], group_name="quality", kinds={"parquet"},
                     description="Every rejected raw row with its rule ids, descriptions and offending values."),
    ],
    check_specs=[
        dg.AssetCheckSpec(name, asset=VALIDATED, description=text, blocking=name != CHECK_GX_SUITE)
        for name, text in _CHECKS.items()
    ],
    partitions_def=nyse_sessions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def validated_and_quarantined_ohlcv(context: dg.AssetExecutionContext, config: ValidationConfig, storage: StorageResource):
    store = storage.store()
    sessions = sessions_of(context)
    with measure() as cost:
        try:
            report = validate_sessions(store, sessions)
        except MissingUpstreamError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
    for s in report.sessions:
        context.add_asset_metadata(
            {"rows_in": s.rows_in, "rows": s.validated, "pass_rate": round(s.pass_rate, 6), "flagged_rows": s.flagged,
             "dagster/row_count": s.validated},
            asset_key=VALIDATED, partition_key=s.key,
        )
        context.add_asset_metadata({"rows": s.quarantined, "dagster/row_count": s.quarantined},
                                   asset_key=QUARANTINED, partition_key=s.key)
    fired = report.summary[report.summary["violations"] > 0]
    yield dg.MaterializeResult(asset_key=VALIDATED, metadata={
        "rules_fired": dg.MetadataValue.md(markdown_table(fired[["rule_id", "severity", "violations", "description"]])),
        **cost.as_metadata()})
    quarantined = report.failures[report.failures["severity"] == "ERROR"]
    yield dg.MaterializeResult(asset_key=QUARANTINED, metadata={
        "rejected": dg.MetadataValue.md(markdown_table(quarantined[["partition", "symbol", "rule_id", "offending_value", "description"]])),
        **cost.as_metadata()})
    yield from _check_results(config, report, store)


def _check_results(config: ValidationConfig, report, store):
    validated, history = report.validated, report.history
    schema = schema_failures(validated)
    yield _result(CHECK_SCHEMA, schema.empty, schema, f"{len(schema)} schema failure case(s)")

    low = pd.DataFrame([{"session": s.key, "rows_in": s.rows_in, "validated": s.validated, "pass_rate": round(s.pass_rate, 4)}
                        for s in report.sessions if s.pass_rate < config.pass_rate_threshold])
    worst = min((s.pass_rate for s in report.sessions), default=1.0)
    yield _result(CHECK_PASS_RATE, low.empty, low, f"{len(low)} session(s) below {config.pass_rate_threshold:.2%}",
                  {"lowest_pass_rate": round(worst, 6), "threshold": config.pass_rate_threshold})

    leaks = residual_errors(validated, history)
    yield _result(CHECK_NO_ERROR_ROWS, leaks.empty, leaks, f"{len(leaks)} ERROR violation(s) among validated rows")

    gaps = session_gaps(validated, history)
    long_gaps = gaps[gaps["sessions"] > config.fillable_gap_sessions]
    severity = dg.AssetCheckSeverity.ERROR if len(long_gaps) else dg.AssetCheckSeverity.WARN
    yield _result(CHECK_NO_MISSING_SESSIONS, gaps.empty, gaps,
                  f"{len(gaps)} gap(s), {len(long_gaps)} longer than {config.fillable_gap_sessions} session(s)",
                  {"missing_symbol_sessions": int(gaps["sessions"].sum()) if len(gaps) else 0}, severity)

    from alphatwin_pipelines.quality.gx_report import run_gx_suite  # great_expectations is slow to import

    outcome = run_gx_suite(validated, store.data_dir / "gx_docs")
    yield _result(CHECK_GX_SUITE, outcome.success, pd.DataFrame(outcome.failed),
                  f"{outcome.successful}/{outcome.evaluated} expectations met",
                  {"data_docs": dg.MetadataValue.url(outcome.docs_index.resolve().as_uri()),
                   "data_docs_path": dg.MetadataValue.path(str(outcome.docs_index))},
                  dg.AssetCheckSeverity.WARN)


def _result(name, passed, cases: pd.DataFrame, summary: str, extra=None, severity=dg.AssetCheckSeverity.ERROR):
    return dg.AssetCheckResult(
        check_name=name, asset_key=VALIDATED, passed=bool(passed), severity=severity,
        description=("passed: " if passed else "failed: ") + summary,
        metadata={"summary": summary, "failures": dg.MetadataValue.md(markdown_table(cases, limit=100)), **(extra or {})},
    )
