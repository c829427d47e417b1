"""Ingest CSV files as soon as someone drops them into the drop folder.

The cursor is a JSON object of file name -> size, mtime and content hash. A file triggers a run
when its name is new or its *content* changed; a file that cannot be ingested is remembered too,
so it is reported once (log line and skip reason naming the file and rule) instead of every tick,
and again only when a fixed version replaces it.
"""

import hashlib
import json

import dagster as dg
import pandas as pd

from alphatwin_pipelines.calendar import last_started_session, sessions_between
from alphatwin_pipelines.drop_folder import DropFileError, FileState, current_states, inspect_file
from assets.partitions import PARTITION_START
from assets.resources import DropFolderResource, StorageResource
from jobs.scan import DropIngestConfig, drop_folder_ingest_job
from schedules.scan import MARKET_TZ


@dg.sensor(
    job=drop_folder_ingest_job,
    minimum_interval_seconds=60,
    description="New or changed CSV files in ALPHATWIN_DROP_DIR are merged into raw_ohlcv for the sessions they cover.",
)
def drop_folder_sensor(context: dg.SensorEvaluationContext, storage: StorageResource,
                       drop_folder: DropFolderResource) -> dg.SensorResult | dg.SkipReason:
    folder = drop_folder.folder(storage)
    if not folder.is_dir():
        return dg.SkipReason(f"drop folder {folder} does not exist: create it or set ALPHATWIN_DROP_DIR")
    seen = _read_cursor(context)
    states = current_states(folder, seen)
    cursor = json.dumps({name: state.to_json() for name, state in states.items()}, sort_keys=True)
    changed = [name for name, state in states.items() if name not in seen or seen[name].sha256 != state.sha256]
    if not changed:
        return dg.SensorResult(skip_reason=f"no new or changed CSV file in {folder}", cursor=cursor)

    # The partition sessions: a row for a session that has not opened yet has no partition to go to.
    window = sessions_between(PARTITION_START, last_started_session(pd.Timestamp.now(tz=MARKET_TZ)))
    accepted, refused = [], []
    for name in changed:
        try:
            accepted.append(inspect_file(folder, name, states[name].sha256, window))
        except DropFileError as exc:
            context.log.error(f"drop folder: not ingesting {exc}")
            refused.append(str(exc))
    if not accepted:
        return dg.SensorResult(skip_reason="no file to ingest; " + " | ".join(refused), cursor=cursor)

    files = {found.name: found.sha256 for found in accepted}
    first = min(found.sessions[0] for found in accepted)
    last = max(found.sessions[-1] for found in accepted)
    for found in accepted:
        if found.rejected_rows:
            context.log.warning(f"drop folder: {found.name} has {found.rejected_rows} rejected row(s); the rest is "
                                "ingested and the rejections go to rejected_inputs.jsonl")
    request = dg.RunRequest(
        run_key=_run_key(files),
        run_config=dg.RunConfig(ops={"ingest_dropped_files": DropIngestConfig(
            folder=str(folder), files=files, first_session=f"{first:%Y-%m-%d}", last_session=f"{last:%Y-%m-%d}")}),
        tags={"alphatwin/trigger": "drop_folder_sensor", "alphatwin/drop_files": ",".join(files)[:200],
              "alphatwin/sessions": f"{first:%Y-%m-%d}..{last:%Y-%m-%d}"},
    )
    return dg.SensorResult(run_requests=[request], cursor=cursor)


def _run_key(files: dict[str, str]) -> str:
    """Same names with the same contents -> same key, so Dagster never launches a drop twice."""
    digest = hashlib.sha256("\n".join(f"{name}:{sha}" for name, sha in sorted(files.items())).encode()).hexdigest()
    return f"drop:{digest[:32]}"


def _read_cursor(context: dg.SensorEvaluationContext) -> dict[str, FileState]:
    if not context.cursor:
        return {}
    try:
        return {name: FileState.from_json(raw) for name, raw in json.loads(context.cursor).items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        context.log.warning("drop folder: unreadable cursor, treating every file as new")
        return {}
