"""The drop-folder sensor on real S&P 500 bars: what triggers a run, what does not, and what the run writes.

The data directory starts with raw partitions of three real symbols; a corrected AAPL file is then
dropped. The run must replace AAPL on the sessions the file covers and leave MSFT and KO alone.
"""

from __future__ import annotations

import json
import os

import dagster as dg
import pandas as pd
import pytest

from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.ingest import ingest
from alphatwin_pipelines.schema import frame_to_arrow
from alphatwin_pipelines.sources.csv_source import CsvFolderSource
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import RAW, UNIVERSE
from alphatwin_pipelines.universe import parse_universe
from assets.resources import DropFolderResource, StorageResource
from jobs.scan import drop_folder_ingest_job
from schedules.drop_folder import drop_folder_sensor

SYMBOLS = ["AAPL", "KO", "MSFT"]
STORED = ("2021-03-01", "2021-03-12")
DROPPED = ("2021-03-08", "2021-03-12")
YAHOO_HEADER = "Date,Open,High,Low,Close,Adj Close,Volume"
ALPHAVANTAGE_HEADER = ["timestamp", "open", "high", "low", "close", "adjusted_close", "volume", "dividend_amount",
                       "split_coefficient"]


def alphavantage(bars: pd.DataFrame) -> pd.DataFrame:
    out = bars.rename(columns={"date": "timestamp", "dividend": "dividend_amount", "split_ratio": "split_coefficient"})
    out["adjusted_close"] = out["close"]
    out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%d")
    return out[ALPHAVANTAGE_HEADER]


@pytest.fixture
def market(tmp_path, sp500_bars):
    """A data dir whose raw partitions hold real AAPL, KO and MSFT bars, and an empty drop folder."""
    real = sp500_bars[sp500_bars["symbol"].isin(SYMBOLS) & sp500_bars["date"].between(*STORED)]
    seed = tmp_path / "seed"
    seed.mkdir()
    for symbol, bars in real.groupby("symbol"):
        alphavantage(bars).to_csv(seed / f"{symbol}.csv", index=False)
    store = TableStore(tmp_path / "data")
    store.write_table(UNIVERSE, frame_to_arrow(parse_universe(",".join(SYMBOLS))))
    ingest(CsvFolderSource(seed), store, SYMBOLS, sessions_between(*STORED))
    drop = tmp_path / "data" / "drop"
    drop.mkdir()
    return store, drop, real.reset_index(drop=True)


def evaluate(store: TableStore, cursor: str | None):
    resources = {"storage": StorageResource(data_dir=str(store.data_dir)), "drop_folder": DropFolderResource()}
    with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
        return drop_folder_sensor(context)


def drop_corrected_aapl(drop, real, factor: float) -> pd.DataFrame:
    bars = real[(real["symbol"] == "AAPL") & real["date"].between(*DROPPED)].copy()
    bars[["open", "high", "low", "close"]] *= factor
    alphavantage(bars).to_csv(drop / "AAPL.csv", index=False)
    return bars


def test_new_file_runs_once_unchanged_file_never_and_changed_file_again(market):
    store, drop, real = market
    drop_corrected_aapl(drop, real, 1.01)
    first = evaluate(store, None)
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    config = request.run_config["ops"]["ingest_dropped_files"]["config"]
    assert (config["first_session"], config["last_session"]) == DROPPED
    assert list(config["files"]) == ["AAPL.csv"]
    assert request.tags["alphatwin/drop_files"] == "AAPL.csv"

    again = evaluate(store, first.cursor)
    assert not again.run_requests and "no new or changed" in again.skip_reason.skip_message

    stat = (drop / "AAPL.csv").stat()
    os.utime(drop / "AAPL.csv", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # re-saved, same bytes
    touched = evaluate(store, again.cursor)
    assert not touched.run_requests
    assert json.loads(touched.cursor)["AAPL.csv"]["mtime_ns"] == stat.st_mtime_ns + 5_000_000_000

    drop_corrected_aapl(drop, real, 1.02)
    changed = evaluate(store, touched.cursor)
    assert len(changed.run_requests) == 1
    assert changed.run_requests[0].run_key != request.run_key
    # Evaluated again from the old cursor (a lost cursor update), the key is the same: no second launch.
    assert evaluate(store, touched.cursor).run_requests[0].run_key == changed.run_requests[0].run_key


@pytest.mark.parametrize(
    ("name", "content", "rule"),
    [
        ("MSFT.csv", "this is not,a price file\n1,2\n", "unknown_format"),
        ("KO.csv", '{"Error Message": "Invalid API call."}', "provider_error_body"),
        ("notes 2021.csv", f"{YAHOO_HEADER}\n2021-03-08,1,1,1,1,1,10\n", "bad_file_name"),
        ("AAPL.csv", f"{YAHOO_HEADER}\n1999-01-04,1,1,1,1,1,10\n", "outside_partitions"),  # before the partitions
    ],
)
def test_a_file_that_does_not_parse_starts_no_run_and_says_why(market, name, content, rule, capfd):
    store, drop, _ = market
    (drop / name).write_text(content)
    result = evaluate(store, None)
    assert not result.run_requests
    message = result.skip_reason.skip_message
    assert name in message and f"[{rule}]" in message
    logged = [line for line in capfd.readouterr().err.splitlines() if "not ingesting" in line]
    assert len(logged) == 1 and name in logged[0] and f"[{rule}]" in logged[0] and "ERROR" in logged[0]
    # Remembered: the same bad file is not reported again on the next tick.
    assert not evaluate(store, result.cursor).run_requests
    assert name in json.loads(result.cursor)


def test_a_good_file_still_runs_beside_a_bad_one(market):
    store, drop, real = market
    drop_corrected_aapl(drop, real, 1.01)
    (drop / "KO.csv").write_text("")
    result = evaluate(store, None)
    assert [list(r.run_config["ops"]["ingest_dropped_files"]["config"]["files"]) for r in result.run_requests] == [
        ["AAPL.csv"]]


def test_the_requested_run_merges_the_dropped_symbol_and_keeps_the_others(market):
    store, drop, real = market
    corrected = drop_corrected_aapl(drop, real, 1.01)
    before = store.read_partitions(RAW, *STORED)
    request = evaluate(store, None).run_requests[0]
    resources = {"storage": StorageResource(data_dir=str(store.data_dir))}

    with dg.DagsterInstance.ephemeral() as instance:
        result = drop_folder_ingest_job.execute_in_process(run_config=request.run_config, resources=resources,
                                                           instance=instance, tags=request.tags)
        assert result.success
        keys = sorted(m.partition for m in result.asset_materializations_for_node("ingest_dropped_files"))
        assert keys == [f"{d:%Y-%m-%d}" for d in sessions_between(*DROPPED)]
        assert instance.get_materialized_partitions(dg.AssetKey(RAW)) == set(keys)

    after = store.read_partitions(RAW, *STORED)
    key = ["symbol", "date"]
    merged = after.merge(before, on=key, suffixes=("", "_before"))
    assert len(after) == len(before) == len(merged)
    in_drop = (merged["symbol"] == "AAPL") & merged["date"].between(*DROPPED)
    assert (merged.loc[~in_drop, "close"] == merged.loc[~in_drop, "close_before"]).all()
    got = merged[in_drop].sort_values("date")["close"].to_numpy()
    assert got == pytest.approx(corrected.sort_values("date")["close"].to_numpy())
    assert set(merged.loc[in_drop, "source"]) == {"csv"}

    # Re-running the same request writes the same bytes.
    files = sorted((store.data_dir / RAW).glob("*.parquet"))
    first_bytes = [f.read_bytes() for f in files]
    with dg.DagsterInstance.ephemeral() as instance:
        assert drop_folder_ingest_job.execute_in_process(run_config=request.run_config, resources=resources,
                                                         instance=instance).success
    assert [f.read_bytes() for f in files] == first_bytes


def test_a_file_changed_after_the_sensor_saw_it_fails_the_run_clearly(market):
    store, drop, real = market
    drop_corrected_aapl(drop, real, 1.01)
    request = evaluate(store, None).run_requests[0]
    drop_corrected_aapl(drop, real, 1.05)
    with dg.DagsterInstance.ephemeral() as instance:
        result = drop_folder_ingest_job.execute_in_process(
            run_config=request.run_config, resources={"storage": StorageResource(data_dir=str(store.data_dir))},
            instance=instance, raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    assert "AAPL.csv" in failure and "changed after the sensor saw it" in failure
