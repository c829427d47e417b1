"""Quality stage: validated and quarantined OHLCV, with blocking checks shown in the UI.

The checks run inside the validation step (they are ``check_specs``), so when a blocking one
fails with ERROR severity Dagster stops every downstream asset of that run: nothing is built
from rows that break the schema or an ERROR rule. Each check covers the sessions of its run
and lists the failing cases as a table.

The session gate (``pass_rate_above_threshold``) is the exception: it fails with ERROR but
does not block. Dagster 1.13 gates whole steps, and a single-run backfill is one step over
the whole range, while a check result carries a partition only when the step has a single
partition key (per-partition ``AssetCheckSpec.partitions_def`` is a preview); so blocking
would let one bad session stop ten years of good ones. The engine holds the failing sessions
back instead (``quality.gate``: downstream stages publish nothing for them) and the check
reports them, with how to re-run or release each one.
"""

import json

import dagster as dg
import pandas as pd
from pydantic import Field

from alphatwin_pipelines.data_dir import state_dir
from alphatwin_pipelines.profiling import measure
from alphatwin_pipelines.quality import rule_table_markdown
from alphatwin_pipelines.quality.gate import HELD, PASSED, GatePolicy
from alphatwin_pipelines.reporting import markdown_table
from alphatwin_pipelines.stages.quality import (
    NOT_DELIVERED, QUARANTINED_ROW, residual_errors, schema_failures, session_gaps, validate_sessions,
)
from alphatwin_pipelines.tables import CLEANED, QUARANTINED, RAW, VALIDATED, MissingUpstreamError
from assets.partitions import nyse_sessions, sessions_of
from assets.resources import StorageResource

CHECK_SCHEMA = "pandera_schema"
CHECK_PASS_RATE = "pass_rate_above_threshold"
CHECK_NO_ERROR_ROWS = "no_error_rule_rows_remain"
CHECK_NO_MISSING_SESSIONS = "no_missing_sessions"
CHECK_GX_SUITE = "great_expectations_suite"

_CHECKS = {
    CHECK_SCHEMA: "Validated rows match the pandera schema: exact dtypes, positive prices, OHLC order, unique keys.",
    CHECK_PASS_RATE: ("No session has more quarantined rows than chance explains at the expected defect rate; "
                      "a session that has is held back from cleaning (not blocking: the other sessions flow)."),
    CHECK_NO_ERROR_ROWS: "Re-running every rule over the validated rows finds no ERROR-severity violation.",
    CHECK_NO_MISSING_SESSIONS: "No listed symbol misses a session; gaps the cleaner may fill are warnings, longer gaps errors.",
    CHECK_GX_SUITE: "The great-expectations suite passes; the check links to its Data Docs.",
}


#: The GX suite duplicates the other checks for its Data Docs; the gate holds sessions itself.
_NOT_BLOCKING = (CHECK_GX_SUITE, CHECK_PASS_RATE)
_DEFAULT_GATE = GatePolicy()


class QualityCheckConfig(dg.Config):
    """Thresholds for the quality checks and the session gate (see ``quality.gate`` for why)."""

    expected_defect_rate: float = Field(_DEFAULT_GATE.expected_defect_rate,
                                        description="Share of a healthy session's raw rows quarantine rejects, on average.")
    false_hold_rate: float = Field(_DEFAULT_GATE.false_hold_rate,
                                   description="Accepted chance, per session, that the gate holds a healthy session back.")
    release_sessions: list[str] = Field(default_factory=list,
                                        description="Held sessions (YYYY-MM-DD) inspected and accepted as they are: they flow.")
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
        dg.AssetCheckSpec(name, asset=VALIDATED, description=text, blocking=name not in _NOT_BLOCKING)
        for name, text in _CHECKS.items()
    ],
    partitions_def=nyse_sessions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def validated_and_quarantined_ohlcv(context: dg.AssetExecutionContext, config: QualityCheckConfig, storage: StorageResource):
    store = storage.store()
    sessions = sessions_of(context)
    with measure() as cost:
        try:
            report = validate_sessions(store, sessions, policy=_policy(config), released=config.release_sessions)
        except MissingUpstreamError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
    for s in report.sessions:
        context.add_asset_metadata(
            {"rows_in": s.rows_in, "rows": s.validated, "pass_rate": round(s.pass_rate, 6), "flagged_rows": s.flagged,
             "gate": s.status, "allowed_quarantined": s.allowed, "dagster/row_count": s.validated},
            asset_key=VALIDATED, partition_key=s.key,
        )
        context.add_asset_metadata({"rows": s.quarantined, "dagster/row_count": s.quarantined},
                                   asset_key=QUARANTINED, partition_key=s.key)
    fired = report.summary[report.summary["violations"] > 0]
    yield dg.MaterializeResult(asset_key=VALIDATED, metadata={
        "rules_fired": dg.MetadataValue.md(markdown_table(fired[["rule_id", "severity", "violations", "description"]])),
        "held_sessions": dg.MetadataValue.json([s.key for s in report.sessions if s.held]),
        **cost.as_metadata()})
    quarantined = report.failures[report.failures["severity"] == "ERROR"]
    yield dg.MaterializeResult(asset_key=QUARANTINED, metadata={
        "rejected": dg.MetadataValue.md(markdown_table(quarantined[["partition", "symbol", "rule_id", "offending_value", "description"]])),
        **cost.as_metadata()})
    yield from _check_results(config, report, store)


def _check_results(config: QualityCheckConfig, report, store):
    validated, history = report.validated, report.history
    schema = schema_failures(validated)
    yield _result(CHECK_SCHEMA, schema.empty, schema, f"{len(schema)} schema failure case(s)")

    yield _gate_result(report, config)

    leaks = residual_errors(validated, report.recheck_context)
    yield _result(CHECK_NO_ERROR_ROWS, leaks.empty, leaks, f"{len(leaks)} ERROR violation(s) among validated rows")

    gaps = session_gaps(validated, history, report.failures)
    long_gaps = gaps[gaps["sessions"] > config.fillable_gap_sessions]
    severity = dg.AssetCheckSeverity.ERROR if len(long_gaps) else dg.AssetCheckSeverity.WARN
    by_cause = gaps.groupby("cause")["sessions"].sum()
    yield _result(CHECK_NO_MISSING_SESSIONS, gaps.empty, gaps,
                  f"{len(gaps)} gap(s), {len(long_gaps)} longer than {config.fillable_gap_sessions} session(s): "
                  f"{int(by_cause.get(NOT_DELIVERED, 0))} symbol-session(s) never delivered (backfill them), "
                  f"{int(by_cause.get(QUARANTINED_ROW, 0))} rejected into {QUARANTINED} (fix at the source, re-fetch)",
                  {"missing_symbol_sessions": int(gaps["sessions"].sum()) if len(gaps) else 0,
                   "not_delivered": int(by_cause.get(NOT_DELIVERED, 0)),
                   "quarantined": int(by_cause.get(QUARANTINED_ROW, 0))}, severity)

    from alphatwin_pipelines.quality.gx_report import run_gx_suite  # great_expectations is slow to import

    outcome = run_gx_suite(validated, state_dir(store.data_dir) / "gx_docs")  # a local site: a file:// link
    yield _result(CHECK_GX_SUITE, outcome.success, pd.DataFrame(outcome.failed),
                  f"{outcome.successful}/{outcome.evaluated} expectations met",
                  {"data_docs": dg.MetadataValue.url(outcome.docs_index.resolve().as_uri()),
                   "data_docs_path": dg.MetadataValue.path(str(outcome.docs_index))},
                  dg.AssetCheckSeverity.WARN)


def _policy(config: QualityCheckConfig) -> GatePolicy:
    return GatePolicy(expected_defect_rate=config.expected_defect_rate, false_hold_rate=config.false_hold_rate)


def _gate_result(report, config: QualityCheckConfig) -> dg.AssetCheckResult:
    """Fails (ERROR, not blocking) while a session of the run is held; released ones are listed too."""
    over = [s for s in report.sessions if s.status != PASSED]
    table = pd.DataFrame([{"session": s.key, "rows_in": s.rows_in, "quarantined": s.quarantined, "allowed": s.allowed,
                           "pass_rate": round(s.pass_rate, 4), "status": s.status} for s in over])
    held = [s.key for s in over if s.status == HELD]
    released = [s.key for s in over if s.status != HELD]
    summary = f"{len(held)} session(s) held back from cleaning" + (f", {len(released)} released" if released else "")
    extra = {"held_sessions": dg.MetadataValue.json(held), "released_sessions": dg.MetadataValue.json(released),
             "lowest_pass_rate": round(min((s.pass_rate for s in report.sessions), default=1.0), 6),
             "expected_defect_rate": config.expected_defect_rate, "false_hold_rate": config.false_hold_rate}
    if held:
        extra["how_to_rerun"] = dg.MetadataValue.md(_rerun_help(held))
    return _result(CHECK_PASS_RATE, not held, table, summary, extra)


def _rerun_help(held: list[str]) -> str:
    keys = ", ".join(held)
    return (f"Held: {keys}. Inspect `{QUARANTINED}` for these partitions. If the raw data was wrong, fix it and "
            f"re-materialise `{RAW}` through `{CLEANED}` for each held partition, then the assets downstream over their "
            f"lookback. If the rows are right as they are, release them: re-materialise `{VALIDATED}` through `{CLEANED}` "
            f"for each with the run config `ops: {{validated_and_quarantined_ohlcv: {{config: {{release_sessions: "
            f"{json.dumps(held)}}}}}}}`.")


def _result(name, passed, cases: pd.DataFrame, summary: str, extra=None, severity=dg.AssetCheckSeverity.ERROR):
    return dg.AssetCheckResult(
        check_name=name, asset_key=VALIDATED, passed=bool(passed), severity=severity,
        description=("passed: " if passed else "failed: ") + summary,
        metadata={"summary": summary, "failures": dg.MetadataValue.md(markdown_table(cases, limit=100)), **(extra or {})},
    )
