"""The ingestion assets (``universe``, ``raw_ohlcv``) end to end through real Dagster runs.

The tests materialise through ``dagster.materialize`` on a throwaway instance, with the
resources built explicitly (a temp data directory, a small synthetic market of 40 symbols, a
folder of CSV files, or the yfinance source on a fake Yahoo), so nothing depends on the
environment, the network or ``./data``. Where a retryable ``Failure`` is expected, the asset
(or the engine) is called directly instead: through ``materialize`` Dagster would honour the
asset's step retry policy, 30 s of backoff and more, which in-process runs cannot switch off.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yfinance
from dagster import DagsterEventType
from yfinance.exceptions import YFRateLimitError

from alphatwin_pipelines import load
from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.ingest import IngestError, ingest
from alphatwin_pipelines.sources.base import RULE_CIRCUIT_OPEN, RULE_NO_DATA, RULE_PROVIDER_ERROR
from alphatwin_pipelines.sources.resilience import RetryPolicy
from alphatwin_pipelines.sources.yfinance_source import YFinanceSource
from alphatwin_pipelines.storage import TableStore
from assets.ingestion import raw_ohlcv, universe
from assets.partitions import nyse_sessions
from assets.resources import MarketDataResource, StorageResource

from fake_yahoo import fake_ticker, history_frame

# yfinance 1.7 itself trips pandas 3.1's inplace deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword", "ignore::dagster.BetaWarning")

DAY = "2024-03-15"
RANGE = ("2024-03-11", "2024-03-22")
RANGE_TAGS = {"dagster/asset_partition_range_start": RANGE[0], "dagster/asset_partition_range_end": RANGE[1]}
RAW_KEY = dg.AssetKey("raw_ohlcv")
PARTITION_METADATA = {"rows", "symbols", "symbols_missing", "source", "duration_s", "peak_rss_mb"}
# What an AlphaVantage-style API writes when a request is refused (trailing comma and all).
PROVIDER_ERROR_BODY = (
    "{\n"
    '    "Error Message": "Invalid API call. Please retry or visit the documentation.",\n'
    "}\n"
)
YAHOO_HEADER = "Date,Open,High,Low,Close,Adj Close,Volume"


# -- helpers -------------------------------------------------------------------------------------
def synthetic(data_dir: Path) -> dict:
    return {
        "storage": StorageResource(data_dir=str(data_dir)),
        "market_data": MarketDataResource(source="synthetic", synthetic_symbols=40),
    }


def csv_resources(data_dir: Path, folder: Path, universe_spec: str) -> dict:
    return {
        "storage": StorageResource(data_dir=str(data_dir)),
        "market_data": MarketDataResource(source="csv", source_path=str(folder), universe=universe_spec),
    }


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def folder_digest(folder: Path) -> dict[str, str]:
    return {p.name: sha(p) for p in sorted(folder.iterdir())}


def partition_file(data_dir: Path, key: str) -> Path:
    return Path(data_dir) / "raw_ohlcv" / f"{key}.parquet"


def partition_files(data_dir: Path) -> list[str]:
    folder = Path(data_dir) / "raw_ohlcv"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def raw_materializations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetMaterialization]:
    mats = result.asset_materializations_for_node("raw_ohlcv")
    by_key = {m.partition: m for m in mats}
    assert len(by_key) == len(mats), "one materialization per partition"
    return by_key


def value(metadata, key):
    """The plain value of a metadata entry (int, float, str, markdown text or path)."""
    entry = metadata[key]
    return getattr(entry, "value", entry)


def md(metadata, key) -> str:
    return metadata[key].md_str


def events_of(result, event_type: DagsterEventType):
    return [e for e in result.all_events if e.event_type == event_type]


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


# -- 1. idempotency ------------------------------------------------------------------------------
def test_rematerialising_a_partition_is_byte_identical_and_reports_its_metadata(tmp_path, instance):
    data_dir = tmp_path / "data"
    resources = synthetic(data_dir)
    digests, rows = [], []
    for _ in range(2):
        result = dg.materialize([universe, raw_ohlcv], partition_key=DAY, resources=resources, instance=instance)
        assert result.success
        path = partition_file(data_dir, DAY)
        digests.append((sha(path), sha(data_dir / "universe.parquet")))
        mats = raw_materializations(result)
        assert list(mats) == [DAY]
        meta = mats[DAY].metadata
        assert PARTITION_METADATA <= set(meta), f"missing: {PARTITION_METADATA - set(meta)}"
        assert value(meta, "rows") == pq.read_metadata(path).num_rows > 0
        assert value(meta, "symbols") == load("raw_ohlcv", data_dir=data_dir)["symbol"].nunique()
        assert value(meta, "symbols") + value(meta, "symbols_missing") == 40
        assert value(meta, "source").startswith("synthetic")
        assert value(meta, "duration_s") >= 0 and value(meta, "peak_rss_mb") > 0
        assert value(meta, "symbols_failed") == 0
        assert Path(meta["path"].path) == path
        rows.append(value(meta, "rows"))

    assert digests[0] == digests[1], "a re-run rewrites the same bytes"
    assert rows[0] == rows[1]
    assert partition_files(data_dir) == [f"{DAY}.parquet"], "no temporary files are left behind"
    # The instance's event log holds both materialisations of the partition, with the metadata.
    records = instance.fetch_materializations(RAW_KEY, limit=10).records
    assert [r.partition_key for r in records] == [DAY, DAY]
    assert all(PARTITION_METADATA <= set(r.asset_materialization.metadata) for r in records)


# -- 2. a range is one run ---------------------------------------------------------------------
def test_partition_range_is_one_run_with_one_materialization_per_session(tmp_path, instance):
    data_dir = tmp_path / "range"
    resources = synthetic(data_dir)
    dg.materialize([universe], resources=resources, instance=instance)
    runs_before = len(instance.get_runs())

    result = dg.materialize([universe, raw_ohlcv], selection=[raw_ohlcv], tags=RANGE_TAGS,
                            resources=resources, instance=instance)

    assert result.success
    assert len(instance.get_runs()) == runs_before + 1, "a range backfill is exactly one run"
    expected = list(sessions_between(*RANGE).strftime("%Y-%m-%d"))
    assert len(expected) == 10
    assert nyse_sessions.get_partition_keys_in_range(dg.PartitionKeyRange(*RANGE)) == expected
    assert len(events_of(result, DagsterEventType.STEP_START)) == 1
    mats = raw_materializations(result)
    assert sorted(mats) == expected
    for key, mat in mats.items():
        path = partition_file(data_dir, key)
        assert Path(mat.metadata["path"].path) == path
        assert value(mat.metadata, "rows") == pq.read_metadata(path).num_rows > 0
        assert value(mat.metadata, "dagster/row_count") == value(mat.metadata, "rows")
        assert value(mat.metadata, "sessions_in_run") == 10
    assert value(mats[expected[0]].metadata, "rows_in_run") == sum(value(m.metadata, "rows") for m in mats.values())
    records = instance.fetch_materializations(RAW_KEY, limit=100).records
    assert sorted(r.partition_key for r in records) == expected
    assert {r.run_id for r in records} == {result.run_id}
    stored = sorted(p.stem for p in (data_dir / "raw_ohlcv").glob("*.parquet"))
    assert stored == expected

    # Range independence: one-partition runs into another directory write the same bytes.
    single_dir = tmp_path / "single"
    for key in (expected[0], DAY, expected[-1]):
        single = dg.materialize([universe, raw_ohlcv], partition_key=key, resources=synthetic(single_dir),
                                instance=instance)
        assert single.success
        assert sha(partition_file(single_dir, key)) == sha(partition_file(data_dir, key)), key
        assert value(raw_materializations(single)[key].metadata, "rows") == value(mats[key].metadata, "rows")


def test_range_across_a_holiday_writes_only_sessions(tmp_path, instance):
    data_dir = tmp_path / "data"
    resources = synthetic(data_dir)
    dg.materialize([universe], resources=resources, instance=instance)
    tags = {"dagster/asset_partition_range_start": "2024-07-01", "dagster/asset_partition_range_end": "2024-07-08"}

    result = dg.materialize([universe, raw_ohlcv], selection=[raw_ohlcv], tags=tags, resources=resources,
                            instance=instance)

    expected = ["2024-07-01", "2024-07-02", "2024-07-03", "2024-07-05", "2024-07-08"]  # not the 4th of July
    assert sorted(raw_materializations(result)) == expected
    assert partition_files(data_dir) == [f"{k}.parquet" for k in expected]


# -- 3. the partition set ------------------------------------------------------------------------
def test_partitions_are_nyse_sessions():
    assert raw_ohlcv.partitions_def == nyse_sessions
    keys = nyse_sessions.get_partition_keys()
    key_set = set(keys)
    assert "2024-07-04" not in key_set  # Independence Day
    assert "2001-09-11" not in key_set  # markets closed after the attacks
    assert not nyse_sessions.has_partition_key("2024-07-04")
    assert {"2024-07-03", "2024-07-05", "2001-09-10", "2001-09-17", DAY} <= key_set
    assert not any(dt.date.fromisoformat(k).weekday() >= 5 for k in keys), "no weekends"
    assert keys == sorted(keys) and len(keys) == len(key_set)
    in_2024 = [k for k in keys if k.startswith("2024-")]
    assert in_2024 == list(sessions_between("2024-01-01", "2024-12-31").strftime("%Y-%m-%d"))
    assert len(in_2024) == 252


def test_first_partition_is_2000_01_03_by_default():
    import os
    import subprocess
    import sys

    if not os.environ.get("ALPHATWIN_START"):
        assert nyse_sessions.get_first_partition_key() == "2000-01-03"
        assert nyse_sessions.get_partition_keys()[0] == "2000-01-03"
        return
    # ALPHATWIN_START is set in this environment: check the default in a clean interpreter.
    env = {k: v for k, v in os.environ.items() if k != "ALPHATWIN_START"}
    code = "from assets.partitions import nyse_sessions as p; print(p.get_first_partition_key())"
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], env=env,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "2000-01-03"


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


# -- 7. provider down: fall back to stored data --------------------------------------------------
YF_SYMBOLS = ["AAA", "BBB", "CCC"]


class FakeYahoo:
    """Yahoo behind the real ``yfinance.download``: only ``Ticker.history`` is faked (tests/fake_yahoo.py),
    so download() builds its frame and logs per-ticker errors exactly as it does against Yahoo.
    ``ticker_error`` makes every history() raise (yfinance catches it and logs it);
    ``download_error`` makes the download call itself raise.
    """

    def __init__(self, monkeypatch):
        self.ticker_error: Exception | None = None
        self.download_error: Exception | None = None
        self.download_calls: list[list[str]] = []
        self.split_calls: list[str] = []
        fake_ticker(monkeypatch, self.history)

    def history(self, ticker, start=None, end=None, **_) -> pd.DataFrame:
        """Bars for [start, end), each symbol on its own price level."""
        if self.ticker_error is not None:
            raise self.ticker_error
        days = sessions_between(pd.Timestamp(start), pd.Timestamp(end) - pd.Timedelta(days=1))
        return history_frame(days, 10.0 * (YF_SYMBOLS.index(ticker.ticker) + 1), volume_unit=1_000)

    def download(self, tickers, **options):
        self.download_calls.append(list(tickers))
        if self.download_error is not None:
            raise self.download_error
        return yfinance.download(tickers, **options)

    def split_history(self, ticker: str) -> pd.Series:
        self.split_calls.append(ticker)
        return pd.Series(dtype="float64")  # no splits


_FAKES: dict[str, FakeYahoo] = {}


class FakeYahooMarketData(MarketDataResource):
    """The yfinance source with its real batching, retries and circuit breaker, on a fake Yahoo:
    two attempts, no sleeping, and a circuit that opens after two consecutive failures."""

    fake: str = ""

    def build_source(self) -> YFinanceSource:
        return YFinanceSource(
            download=_FAKES[self.fake].download,
            split_history=_FAKES[self.fake].split_history,
            batch_size=1,
            retry=RetryPolicy(max_attempts=2, base_delay_s=0),
            failure_threshold=2,
            sleep=lambda _s: None,
        )


@pytest.fixture
def fake_yahoo(monkeypatch, request):
    fake = FakeYahoo(monkeypatch)
    _FAKES[request.node.name] = fake
    yield request.node.name, fake
    _FAKES.pop(request.node.name, None)


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "outage",
    [
        pytest.param(lambda fake: setattr(fake, "ticker_error", YFRateLimitError()), id="rate-limited-429"),
        pytest.param(lambda fake: setattr(fake, "download_error", ConnectionError("connection reset by peer")),
                     id="connection-error"),
    ],
)
def test_provider_outage_falls_back_to_the_stored_partition(tmp_path, instance, fake_yahoo, outage):
    name, fake = fake_yahoo
    data_dir = tmp_path / "data"
    resources = {
        "storage": StorageResource(data_dir=str(data_dir)),
        "market_data": FakeYahooMarketData(source="yfinance", universe=",".join(YF_SYMBOLS), fake=name),
    }
    first = dg.materialize([universe, raw_ohlcv], partition_key=DAY, resources=resources, instance=instance)
    assert first.success
    path = partition_file(data_dir, DAY)
    digest = sha(path)
    stored = load("raw_ohlcv", data_dir=data_dir)
    assert sorted(stored["symbol"]) == YF_SYMBOLS and set(stored["source"]) == {"yfinance"}
    assert value(raw_materializations(first)[DAY].metadata, "symbols_failed") == 0
    assert len(fake.download_calls) == 3 and sorted(fake.split_calls) == YF_SYMBOLS

    outage(fake)
    fake.download_calls.clear()
    second = dg.materialize([universe, raw_ohlcv], selection=[raw_ohlcv], partition_key=DAY,
                            resources=resources, instance=instance)

    assert second.success
    # The circuit opened on the first symbol's second failed attempt; the rest were never tried.
    assert fake.download_calls == [["AAA"], ["AAA"]]
    meta = raw_materializations(second)[DAY].metadata
    warnings = md(meta, "warnings")
    assert "circuit open" in warnings
    assert "fell back to the last stored data for 3" in warnings
    assert value(meta, "fallback_symbols") == ", ".join(YF_SYMBOLS)
    assert value(meta, "rows") == 3 and value(meta, "symbols_missing") == 0
    assert RULE_CIRCUIT_OPEN in md(meta, "symbols_failed_why")
    assert sha(path) == digest, "the stored partition is rewritten with the same bytes"
    assert not events_of(second, DagsterEventType.STEP_UP_FOR_RETRY)
    log = load("rejected_inputs", data_dir=data_dir)
    assert sorted(log["symbol"]) == YF_SYMBOLS and set(log["rule"]) == {RULE_CIRCUIT_OPEN}
    assert set(log["run_id"]) == {second.run_id}


def test_provider_outage_with_nothing_stored_is_a_retryable_failure(tmp_path, instance, fake_yahoo):
    name, fake = fake_yahoo
    fake.download_error = ConnectionError("connection reset by peer")
    data_dir = tmp_path / "data"
    resources = {
        "storage": StorageResource(data_dir=str(data_dir)),
        "market_data": FakeYahooMarketData(source="yfinance", universe=",".join(YF_SYMBOLS), fake=name),
    }
    assert dg.materialize([universe], resources=resources, instance=instance).success
    # Through materialize, Dagster would honour the asset's retry policy (30 s and more of backoff,
    # which in-process runs cannot switch off), so the asset is invoked directly to see its Failure.
    assert raw_ohlcv.op.retry_policy is not None and raw_ohlcv.op.retry_policy.max_retries >= 1
    with dg.build_asset_context(partition_key=DAY, instance=instance) as context, \
            pytest.raises(dg.Failure) as caught:
        raw_ohlcv(context, market_data=resources["market_data"], storage=resources["storage"])
    assert caught.value.allow_retries is True, "an unreachable provider is worth retrying"
    assert "did not answer" in caught.value.description
    assert fake.download_calls == [["AAA"], ["AAA"]]
    assert partition_files(data_dir) == []


def test_provider_outage_over_a_range_does_not_write_empty_partitions(tmp_path, fake_yahoo):
    # At the engine level: through Dagster a retryable Failure would wait out the asset's step retries,
    # and direct asset invocation does not support add_asset_metadata(partition_key=...).
    name, fake = fake_yahoo
    store = TableStore(tmp_path / "data")
    source = FakeYahooMarketData(source="yfinance", fake=name).build_source()
    ingest(source, store, YF_SYMBOLS, sessions_between(DAY, DAY))
    fake.download_error = ConnectionError("connection reset by peer")
    source = FakeYahooMarketData(source="yfinance", fake=name).build_source()  # a fresh circuit
    try:
        ingest(source, store, YF_SYMBOLS, sessions_between(*RANGE))
    except IngestError as exc:
        assert exc.retryable  # refusing the range (retryably) is one acceptable fix
    assert partition_files(store.data_dir) == [f"{DAY}.parquet"], "only the session with stored data may be written"
