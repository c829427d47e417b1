"""Every failed run leaves a line in ``<state_dir>/run_failures.jsonl`` and, when configured, a webhook call.

The state directory (``data_dir.state_dir``) is the data directory unless that is an object store.

The webhook URL comes only from ``ALPHATWIN_FAILURE_WEBHOOK`` (an EnvVar) and is never logged: such
URLs usually carry their token. A webhook that is down is logged as a warning; the failure itself
is already on disk, and raising would only make the sensor retry and append the line twice.
"""

import datetime as dt

import dagster as dg

from alphatwin_pipelines.data_dir import state_dir
from alphatwin_pipelines.run_failures import RUN_FAILURES_LOG, append_line, post_json
from assets.resources import FailureWebhookResource, StorageResource


@dg.run_failure_sensor(
    name="run_failure_recorder",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Record each failed run (run id, job, failed steps, errors, time) and POST it to the webhook.",
)
def run_failure_recorder(context: dg.RunFailureSensorContext, storage: StorageResource,
                         failure_webhook: FailureWebhookResource) -> None:
    record = failure_record(context)
    path = state_dir(storage.path()) / RUN_FAILURES_LOG
    append_line(path, record)
    context.log.info(f"recorded failure of run {record['run_id']} ({record['job']}) in {path}")
    if failure_webhook.url:
        problem = post_json(failure_webhook.url, record, timeout_s=failure_webhook.timeout_s)
        if problem:
            context.log.warning(f"failure webhook (ALPHATWIN_FAILURE_WEBHOOK) not reached for run "
                                f"{record['run_id']}: {problem}; the failure is still in {path}")


def failure_record(context: dg.RunFailureSensorContext) -> dict:
    """What an operator needs first: which run, which step, what error, when."""
    run = context.dagster_run
    steps = [{"step": event.step_key, "error": _step_error(event)} for event in context.get_step_failure_events()]
    record = context.instance.get_run_record_by_id(run.run_id)
    ended = record.end_time if record and record.end_time else dt.datetime.now(dt.timezone.utc).timestamp()
    return {
        "time": dt.datetime.fromtimestamp(ended, dt.timezone.utc).isoformat(timespec="seconds"),
        "run_id": run.run_id,
        "job": run.job_name,
        "partition": run.tags.get("dagster/partition"),
        "step": steps[0]["step"] if steps else None,
        "error": steps[0]["error"] if steps else context.failure_event.message,
        "failed_steps": steps,
        "run_message": context.failure_event.message,
    }


def _step_error(event: dg.DagsterEvent) -> str:
    data = event.step_failure_data
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    return data.error.message.strip() if data.error else event.message or "unknown error"
