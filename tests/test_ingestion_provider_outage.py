"""``raw_ohlcv`` with the yfinance source when the provider is down, through real Dagster runs (or
the asset and the engine called directly where a retryable ``Failure`` is expected): fall back to
the stored partition, or fail retryably, and never write an empty partition.

Yahoo is faked one level below the real ``yfinance.download`` (tests/fake_yahoo.py). Where a
retryable ``Failure`` is expected, the asset (or the engine) is called directly instead: through
``materialize`` Dagster would honour the asset's step retry policy, 30 s of backoff and more,
which in-process runs cannot switch off.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest
import yfinance
from dagster import DagsterEventType
from yfinance.exceptions import YFRateLimitError

from alphatwin_pipelines import load
from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.ingest import IngestError, ingest
from alphatwin_pipelines.sources.base import RULE_CIRCUIT_OPEN
from alphatwin_pipelines.sources.resilience import RetryPolicy
from alphatwin_pipelines.sources.yfinance_source import YFinanceSource
from alphatwin_pipelines.storage import TableStore
from assets.ingestion import raw_ohlcv, universe
from assets.resources import MarketDataResource, StorageResource

from fake_yahoo import fake_ticker, history_frame
from ingestion_support import DAY, RANGE, events_of, md, partition_file, partition_files, raw_materializations, sha, value

# yfinance 1.7 itself trips pandas 3.1's inplace deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword", "ignore::dagster.BetaWarning")


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
