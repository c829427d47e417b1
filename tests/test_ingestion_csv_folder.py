"""``raw_ohlcv`` on a folder of CSV files with bad inputs, through real Dagster runs: one bad file
fails only its symbol, every file bad is a non-retryable failure that writes nothing, and a
universe symbol without a file is recorded as no data. Input files are only read.

The tests materialise through ``dagster.materialize`` on a throwaway instance, with the
resources built explicitly (a temp data directory and a folder of CSV files written here).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster import DagsterEventType

from alphatwin_pipelines import load
from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.sources.base import RULE_NO_DATA, RULE_PROVIDER_ERROR
from assets.ingestion import raw_ohlcv, universe
from assets.resources import MarketDataResource, StorageResource

from ingestion_support import DAY, RANGE, events_of, md, partition_files, raw_materializations, sha, value

pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning")

# What an AlphaVantage-style API writes when a request is refused (trailing comma and all).
PROVIDER_ERROR_BODY = (
    "{\n"
    '    "Error Message": "Invalid API call. Please retry or visit the documentation.",\n'
    "}\n"
)
YAHOO_HEADER = "Date,Open,High,Low,Close,Adj Close,Volume"


def csv_resources(data_dir: Path, folder: Path, universe_spec: str) -> dict:
    return {
        "storage": StorageResource(data_dir=str(data_dir)),
        "market_data": MarketDataResource(source="csv", source_path=str(folder), universe=universe_spec),
    }


def folder_digest(folder: Path) -> dict[str, str]:
    return {p.name: sha(p) for p in sorted(folder.iterdir())}


def yahoo_csv(start: float, days=None) -> str:
    days = days if days is not None else sessions_between(*RANGE)
    lines = [YAHOO_HEADER]
    for i, day in enumerate(days):
        close = start + i
        lines.append(f"{day:%Y-%m-%d},{close - 0.5:.2f},{close + 1:.2f},{close - 1:.2f},{close:.2f},"
                     f"{close * 0.99:.4f},{1_000_000 + i * 1000}")
    return "\n".join(lines) + "\n"


def good_folder(folder: Path) -> Path:
    folder.mkdir()
    (folder / "GOOD1.csv").write_text(yahoo_csv(100.0))
    (folder / "GOOD2.csv").write_text(yahoo_csv(50.0))
    return folder


# -- 4. CSV folder: one bad file -----------------------------------------------------------------
def test_csv_provider_error_file_fails_one_symbol_and_the_rest_materialise(tmp_path, instance):
    folder = good_folder(tmp_path / "csv")
    (folder / "BAD.csv").write_text(PROVIDER_ERROR_BODY)
    before = folder_digest(folder)
    data_dir = tmp_path / "data"

    result = dg.materialize([universe, raw_ohlcv], partition_key=DAY, instance=instance,
                            resources=csv_resources(data_dir, folder, "GOOD1,GOOD2,BAD"))

    assert result.success
    meta = raw_materializations(result)[DAY].metadata
    assert value(meta, "rows") == 2 and value(meta, "symbols") == 2
    assert value(meta, "symbols_missing") == 1 and value(meta, "symbols_missing_list") == "BAD"
    assert value(meta, "symbols_failed") == 1
    why = md(meta, "symbols_failed_why")
    assert "BAD" in why and "BAD.csv" in why and RULE_PROVIDER_ERROR in why
    assert "GOOD1" not in why and "GOOD2" not in why

    bars = load("raw_ohlcv", data_dir=data_dir).set_index("symbol")
    assert sorted(bars.index) == ["GOOD1", "GOOD2"]
    assert set(bars["date"].dt.strftime("%Y-%m-%d")) == {DAY}
    i = list(sessions_between(*RANGE)).index(pd.Timestamp(DAY))
    assert bars.loc["GOOD1", "close"] == pytest.approx(100.0 + i)
    assert bars.loc["GOOD2", "close"] == pytest.approx(50.0 + i)

    log = load("rejected_inputs", data_dir=data_dir)
    assert len(log) == 1
    record = log.iloc[0]
    assert record["symbol"] == "BAD" and record["rule"] == RULE_PROVIDER_ERROR
    assert Path(record["file"]) == folder / "BAD.csv"
    assert "Invalid API call" in record["reason"]
    assert record["table"] == "raw_ohlcv" and record["sessions"] == f"{DAY}..{DAY}"
    assert record["run_id"] == result.run_id

    assert folder_digest(folder) == before, "input files are only read, never changed or moved"


# -- 5. CSV folder: every file bad ---------------------------------------------------------------
@pytest.mark.timeout(90)  # a retryable Failure would sit in Dagster's 30 s+ step-retry backoff
def test_all_symbols_failing_is_a_non_retryable_failure_that_writes_nothing(tmp_path, instance):
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "BAD1.csv").write_text(PROVIDER_ERROR_BODY)
    (folder / "BAD2.csv").write_text("Date,Open,Close\n2024-03-15,1.0,2.0\n")  # no High/Low/Volume
    before = folder_digest(folder)
    data_dir = tmp_path / "data"
    resources = csv_resources(data_dir, folder, "BAD1,BAD2")

    result = dg.materialize([universe, raw_ohlcv], partition_key=DAY, instance=instance, resources=resources,
                            raise_on_error=False)

    assert not result.success
    assert (data_dir / "universe.parquet").exists()  # the universe step itself succeeded
    failures = result.get_step_failure_events()
    assert [e.step_key for e in failures] == ["raw_ohlcv"]
    data = failures[0].step_failure_data
    assert data.error.cls_name == "Failure"
    description = data.user_failure_data.description
    for needle in ("BAD1.csv", "BAD2.csv", RULE_PROVIDER_ERROR, "missing_columns", "Fix the inputs"):
        assert needle in description, f"{needle!r} not in {description!r}"
    rejected = data.user_failure_data.metadata["rejected"].md_str
    assert "BAD1" in rejected and "BAD2" in rejected
    assert not events_of(result, DagsterEventType.STEP_UP_FOR_RETRY), "bad data is never retried"
    assert not result.asset_materializations_for_node("raw_ohlcv")
    assert partition_files(data_dir) == [], "a failed run writes no partition file"
    log = load("rejected_inputs", data_dir=data_dir)
    assert sorted(zip(log["symbol"], log["rule"])) == [("BAD1", RULE_PROVIDER_ERROR), ("BAD2", "missing_columns")]
    assert folder_digest(folder) == before

    # The exception itself: a Failure that forbids retries.
    with pytest.raises(dg.Failure) as caught:
        dg.materialize([universe, raw_ohlcv], selection=[raw_ohlcv], partition_key=DAY, instance=instance,
                       resources=resources)
    assert caught.value.allow_retries is False
    assert "BAD1.csv" in caught.value.description
    assert partition_files(data_dir) == []


# -- 6. a universe symbol without a file ---------------------------------------------------------
def test_symbol_without_data_is_recorded_as_no_data(tmp_path, instance):
    folder = good_folder(tmp_path / "csv")
    data_dir = tmp_path / "data"

    result = dg.materialize([universe, raw_ohlcv], partition_key=DAY, instance=instance,
                            resources=csv_resources(data_dir, folder, "GOOD1,GOOD2,GONE"))

    assert result.success
    meta = raw_materializations(result)[DAY].metadata
    assert value(meta, "symbols") == 2 and value(meta, "symbols_missing_list") == "GONE"
    assert value(meta, "symbols_failed") == 1
    why = md(meta, "symbols_failed_why")
    assert "GONE" in why and RULE_NO_DATA in why
    assert sorted(load("raw_ohlcv", data_dir=data_dir)["symbol"]) == ["GOOD1", "GOOD2"]
    log = load("rejected_inputs", data_dir=data_dir)
    assert list(zip(log["symbol"], log["rule"])) == [("GONE", RULE_NO_DATA)]
    assert "GONE.csv" in log["reason"].iloc[0]

