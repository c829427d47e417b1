"""Great Expectations suite and Data Docs for ``validated_ohlcv`` (no Dagster imports).

The rule engine (``validate``) decides which rows survive; this module re-checks the
survivors with an independent tool and publishes the verdict as browsable static HTML, so
a reviewer can audit a partition without running Python. It is a second opinion, not a
gate: it never drops or edits rows.

``great_expectations`` is imported inside ``run_gx_suite`` only, because importing it costs
seconds and most code paths that import the quality package never publish Data Docs.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from alphatwin_pipelines.quality.catalogue_bars import MAX_SPLIT_RATIO
from alphatwin_pipelines.schema import BAR_COLUMNS, PRICE_COLUMNS
from alphatwin_pipelines.tables import VALIDATED

#: Columns of a ``validated_ohlcv`` partition: canonical bars plus the rule engine's extras.
VALIDATED_COLUMNS: tuple[str, ...] = (*BAR_COLUMNS, "flags", "raw_row")

#: Same pattern as ``universe``'s symbol check, so GX and the rule engine agree on tickers.
SYMBOL_REGEX = r"^[A-Z][A-Z0-9]{0,5}([.\-][A-Z0-9]{1,3})?$"

#: Keeps each failure readable in logs and Dagster metadata; the full list is in Data Docs.
MAX_UNEXPECTED_VALUES = 5

_DATASOURCE = "alphatwin_pandas"
_BATCH = "whole_frame"
_SITE = "local_site"


@dataclass(frozen=True)
class GxOutcome:
    """The verdict in plain Python types, so callers never need to import GX to read it."""

    success: bool
    evaluated: int
    successful: int
    failed: list[dict[str, Any]]
    docs_index: Path
    docs_page: Path | None
    duration_s: float  # wall time of the call, including the GX import on the first call


def _expectations(gxe: Any) -> list[Any]:
    """Bar invariants that must hold after validation; each mirrors an ERROR rule."""
    not_null = ("symbol", "date", *PRICE_COLUMNS, "volume", "dividend", "split_ratio", "raw_row")
    pairs = (("high", "low"), ("high", "open"), ("high", "close"), ("open", "low"), ("close", "low"))
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectTableColumnsToMatchSet(column_set=list(VALIDATED_COLUMNS), exact_match=True),
        *(gxe.ExpectColumnValuesToNotBeNull(column=c) for c in not_null),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["symbol", "date"]),
        gxe.ExpectColumnValuesToMatchRegex(column="symbol", regex=SYMBOL_REGEX),
        *(gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, strict_min=True) for c in PRICE_COLUMNS),
        gxe.ExpectColumnValuesToBeBetween(column="volume", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="dividend", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(
            column="split_ratio", min_value=1 / MAX_SPLIT_RATIO, max_value=MAX_SPLIT_RATIO
        ),
        *(gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A=a, column_B=b, or_equal=True)
          for a, b in pairs),
    ]


def _quiet_context(gx: Any, root: Path) -> Any:
    """A file context under ``root`` with analytics and tqdm bars off (persisted, so set once)."""
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", project_root_dir=root)
    bars = context.variables.progress_bars or {}  # a dict once reloaded from the YAML
    if context.variables.analytics_enabled is not False or bars.get("globally", True):
        context.variables.analytics_enabled = False
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.variables.save()
    return context


def _plain(value: Any) -> Any:
    """Numpy/pandas scalars to builtins, so failures compare and serialise predictably."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (pd.Timestamp, dt.datetime, dt.date)):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def _failure(result: Any) -> dict[str, Any]:
    """One failed expectation as a small dict a human can read in a log line."""
    config = result.expectation_config
    kwargs = config.kwargs
    columns = kwargs.get("column_list") or [
        kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs
    ]
    body = result.result or {}
    entry: dict[str, Any] = {
        "expectation": config.type,
        "columns": list(columns),
        "unexpected_count": body.get("unexpected_count"),
        "unexpected_values": _plain(body.get("partial_unexpected_list", [])[:MAX_UNEXPECTED_VALUES]),
        # Frame index labels of the first offenders, so a reviewer can pull the rows up.
        "unexpected_index": _plain(body.get("partial_unexpected_index_list", [])[:MAX_UNEXPECTED_VALUES]),
    }
    if "observed_value" in body:
        entry["observed_value"] = _plain(body["observed_value"])
    if body.get("details", {}).get("mismatched"):
        entry["mismatched"] = _plain(body["details"]["mismatched"])
    # GX nests exceptions per metric (e.g. a missing column); surface the first message only.
    info = result.exception_info or {}
    infos = [info] if "raised_exception" in info else list(info.values())
    messages = [i.get("exception_message") for i in infos if i.get("raised_exception")]
    if messages:
        entry["exception"] = messages[0]
    return entry


def run_gx_suite(
    frame: pd.DataFrame,
    docs_dir: str | Path,
    *,
    suite_name: str = VALIDATED,
    run_name: str | None = None,
) -> GxOutcome:
    """Validate the whole frame and rebuild the Data Docs site under ``docs_dir``.

    A file context lives in ``docs_dir/gx`` so earlier runs stay listed in the docs index and
    nothing is written outside ``docs_dir``. Runs sharing one ``docs_dir`` must not overlap:
    GX rewrites its config and site index without locking.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # offline: never phone home
    started = time.perf_counter()
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.core.run_identifier import RunIdentifier

    root = Path(docs_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    context = _quiet_context(gx, root)

    asset = context.data_sources.add_or_update_pandas(_DATASOURCE).add_dataframe_asset(suite_name)
    batch = asset.add_batch_definition_whole_dataframe(_BATCH)
    suite = gx.ExpectationSuite(name=suite_name, expectations=_expectations(gxe))
    suite = context.suites.add_or_update(suite)
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=suite_name, data=batch, suite=suite)
    )
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=f"{suite_name}_checkpoint",
            validation_definitions=[definition],
            actions=[UpdateDataDocsAction(name="update_data_docs", site_names=[_SITE])],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 20},
        )
    )
    # A shallow copy shields the caller's frame from any column GX adds or drops; under
    # pandas copy-on-write no data is duplicated.
    run_id = RunIdentifier(run_name=run_name, run_time=dt.datetime.now(dt.timezone.utc))
    result = checkpoint.run(batch_parameters={"dataframe": frame.copy(deep=False)}, run_id=run_id)

    key, suite_result = next(iter(result.run_results.items()))
    failed = sorted((_failure(r) for r in suite_result.results if not r.success),
                    key=lambda f: (f["expectation"], f["columns"]))
    stats = suite_result.statistics
    default_index = root / "gx" / "uncommitted" / "data_docs" / _SITE / "index.html"
    return GxOutcome(
        success=bool(result.success),
        evaluated=int(stats["evaluated_expectations"]),
        successful=int(stats["successful_expectations"]),
        failed=failed,
        docs_index=_site_file(context) or default_index,
        docs_page=_site_file(context, key),
        duration_s=time.perf_counter() - started,
    )


def _site_file(context: Any, key: Any = None) -> Path | None:
    """Local path of the site index (no key) or of one run's page, asked of GX not guessed."""
    from urllib.parse import unquote, urlparse

    for site in context.get_docs_sites_urls(resource_identifier=key, site_names=[_SITE]):
        url = urlparse(site.get("site_url") or "")
        if url.scheme == "file" and Path(unquote(url.path)).is_file():
            return Path(unquote(url.path))
    return None
