"""PolygonSource end to end: the real polygon client against a local server replaying
Polygon's recorded responses, plus injected faults (429, 500s, slow answers)."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from alphatwin_pipelines.sources.base import RULE_CIRCUIT_OPEN, RULE_NETWORK, RULE_PROVIDER_ERROR, SourceConfigError
from alphatwin_pipelines.sources.polygon_source import PolygonSource
from alphatwin_pipelines.sources.resilience import RetryPolicy
from conftest import POLYGON_RESPONSES

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=60.0)
AAPL_RANGE = "/v2/aggs/ticker/AAPL/range/1/day/2005-04-01/2005-04-04"
REFERENCE_DATE_FIELDS = {"splits": "execution_date", "dividends": "ex_dividend_date"}


class RecordedPolygon:
    """Answers like api.polygon.io from the recorded files, with overrides and faults.

    Files mirror the request path and ``&`` stands for ``?``. A request is served by the file
    matching path and query, else the path's own file, else the path's only recorded query
    variant. Reference listings are filtered by ticker and date bounds as Polygon does.
    """

    def __init__(self, root: Path):
        self.root = root
        self.overrides: dict[str, dict] = {}
        self.faults: list[dict] = []
        self.hits: list[tuple[str, dict, dict]] = []
        self._lock = threading.Lock()

    def fail(self, path_prefix: str, *, status: int | None = None, sleep_s: float = 0.0,
             times: int | None = None, headers: dict | None = None) -> None:
        self.faults.append({"prefix": path_prefix, "status": status, "sleep_s": sleep_s,
                            "times": times, "headers": headers or {}})

    def hits_on(self, prefix: str) -> int:
        return sum(1 for path, _, _ in self.hits if path.startswith(prefix))

    def answer(self, raw_path: str, headers: dict) -> tuple[int, dict, dict]:
        parts = urlsplit(raw_path)
        path, query = parts.path, dict(parse_qsl(parts.query))
        with self._lock:
            self.hits.append((path, query, headers))
            fault = next((f for f in self.faults if path.startswith(f["prefix"]) and f["times"] != 0), None)
            if fault and fault["times"] is not None:
                fault["times"] -= 1
        if fault and fault["sleep_s"]:
            time.sleep(fault["sleep_s"])
        if fault and fault["status"]:
            return fault["status"], fault["headers"], {"status": "ERROR", "error": "injected fault"}
        if path in self.overrides:
            return 200, {}, self.overrides[path]
        body = self._recorded(path, parts.query)
        if body is None:
            return 404, {}, {"status": "NOT_FOUND", "message": f"no recording for {raw_path}"}
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if path.startswith("/v3/reference/") and name in REFERENCE_DATE_FIELDS:
            body = {**body, "results": _filter_reference(body.get("results", []), query, REFERENCE_DATE_FIELDS[name])}
        return 200, {}, body

    def _recorded(self, path: str, query: str) -> dict | None:
        base = self.root / path.strip("/")
        candidates = [base.parent / f"{base.name}&{query}.json"] if query else []
        candidates += [base.with_name(base.name + ".json"), *sorted(base.parent.glob(f"{base.name}&*.json"))]
        found = next((c for c in candidates if c.is_file()), None)
        return json.loads(found.read_text()) if found else None


def _filter_reference(results: list[dict], query: dict, date_field: str) -> list[dict]:
    checks = {"gte": lambda v, b: v >= b, "lte": lambda v, b: v <= b, "gt": lambda v, b: v > b, "lt": lambda v, b: v < b}
    kept = [r for r in results if "ticker" not in query or r.get("ticker") == query["ticker"]]
    for op, check in checks.items():
        if f"{date_field}.{op}" in query:
            kept = [r for r in kept if check(r.get(date_field, ""), query[f"{date_field}.{op}"])]
    return kept[: int(query.get("limit", 10))]


@pytest.fixture
def recorded_root() -> Path:
    if not POLYGON_RESPONSES.is_dir():
        pytest.skip(f"recorded Polygon responses not found at {POLYGON_RESPONSES}")
    return POLYGON_RESPONSES


@pytest.fixture
def server(recorded_root):
    app = RecordedPolygon(recorded_root)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            status, headers, body = app.answer(self.path, dict(self.headers))
            payload = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up on a deliberately slow answer

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    app.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield app
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


class SleepLog(list):
    """Stands in for time.sleep: records the backoff delays instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_source(server, **options) -> PolygonSource:
    options = {"calls_per_minute": 1000, "retry": FAST_RETRY, "sleep": SleepLog(), **options}
    return PolygonSource("test-key", base_url=server.url, **options)


def sessions(*days: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(list(days)))


def recorded(root: Path, relative: str) -> dict:
    return json.loads((root / relative).read_text())


def synthetic_aggs(ticker: str, days: list[str], start_price: float) -> dict:
    """An aggregates body for dates the recordings lack; t is New York midnight, like Polygon."""
    results = []
    for i, day in enumerate(days):
        t = int(datetime.fromisoformat(day).replace(tzinfo=ZoneInfo("America/New_York")).timestamp() * 1000)
        price = start_price + i
        results.append({"T": ticker, "o": price, "h": price + 1, "l": price - 1, "c": price + 0.5,
                        "v": 1000.0 + i, "vw": price, "t": t, "n": 10})
    return {"ticker": ticker, "results": results, "resultsCount": len(results), "status": "OK", "adjusted": False}


def test_missing_api_key_is_a_config_error():
    for key in (None, "", "   "):
        with pytest.raises(SourceConfigError, match="POLYGON_API_KEY is not set"):
            PolygonSource(key)


def test_grouped_daily_parses_the_recorded_response(server, recorded_root):
    source = make_source(server)
    result = source.fetch(["GIK", "AAPL"], sessions("2005-04-04"))  # 1 session < 2 symbols: grouped

    expected = recorded(recorded_root, "v2/aggs/grouped/locale/us/market/stocks/2005-04-04&adjusted=true.json")["results"][0]
    bars = result.bars
    assert list(bars["symbol"]) == ["GIK"]
    row = bars.iloc[0]
    assert row["date"] == pd.Timestamp("2005-04-04")
    assert (row["open"], row["high"], row["low"], row["close"]) == (expected["o"], expected["h"], expected["l"], expected["c"])
    assert row["volume"] == expected["v"] == 895345
    assert (row["dividend"], row["split_ratio"], row["source"]) == (0.0, 1.0, "polygon")
    assert result.rejections == []
    # The recording's t is 2020-10-14: the source keeps the requested date and says so.
    assert any("2020-10-14" in w for w in result.warnings)

    grouped = [(p, q) for p, q, _ in server.hits if p.startswith("/v2/aggs/grouped")]
    assert [p for p, _ in grouped] == ["/v2/aggs/grouped/locale/us/market/stocks/2005-04-04"]
    assert grouped[0][1]["adjusted"] == "false"  # raw prices (the client also echoes locale etc.)
    splits_query = next(q for p, q, _ in server.hits if p == "/v3/reference/splits")
    assert splits_query == {"execution_date.gte": "2005-04-04", "execution_date.lte": "2005-04-04", "limit": "1000"}
    assert result.requests == len(server.hits) == 3  # grouped bars, splits, dividends


def test_per_ticker_aggregates_for_aapl(server, recorded_root):
    source = make_source(server)
    result = source.fetch(["aapl"], sessions("2005-04-01", "2005-04-04"))  # 1 symbol < 2 sessions

    expected = recorded(recorded_root, "v2/aggs/ticker/AAPL/range/1/day/2005-04-01/2005-04-04.json")["results"]
    bars = result.bars
    assert list(bars["date"]) == [pd.Timestamp("2005-04-01"), pd.Timestamp("2005-04-04")]
    assert list(bars["open"]) == [r["o"] for r in expected]
    assert list(bars["close"]) == [r["c"] for r in expected]
    assert list(bars["volume"]) == [642646396, 578172308]
    assert str(bars["volume"].dtype) == "int64"
    assert result.rejections == [] and result.warnings == []

    path, query, headers = server.hits[0]
    assert path == AAPL_RANGE
    assert query == {"adjusted": "false", "sort": "asc", "limit": "50000"}
    assert headers["Authorization"] == "Bearer test-key"
    assert [q.get("ticker") for p, q, _ in server.hits[1:]] == ["AAPL", "AAPL"]
    assert result.requests == 3


def test_splits_and_dividends_land_on_their_rows(server):
    # The recorded reference data is real; the recordings hold no bars on those dates.
    server.overrides["/v2/aggs/ticker/GOOGL/range/1/day/2022-07-14/2022-07-19"] = synthetic_aggs(
        "GOOGL", ["2022-07-14", "2022-07-15", "2022-07-18", "2022-07-19"], 2200.0)
    server.overrides["/v2/aggs/ticker/AIRTP/range/1/day/2023-11-09/2023-11-14"] = synthetic_aggs(
        "AIRTP", ["2023-11-09", "2023-11-10", "2023-11-13", "2023-11-14"], 20.0)
    source = make_source(server)

    googl = source.fetch(["GOOGL"], sessions("2022-07-14", "2022-07-15", "2022-07-18", "2022-07-19")).bars
    assert dict(zip(googl["date"].dt.strftime("%m-%d"), googl["split_ratio"])) == {
        "07-14": 1.0, "07-15": 1.0, "07-18": 20.0, "07-19": 1.0}

    airtp = source.fetch(["AIRTP"], sessions("2023-11-09", "2023-11-10", "2023-11-13", "2023-11-14")).bars
    assert dict(zip(airtp["date"].dt.strftime("%m-%d"), airtp["dividend"])) == {
        "11-09": 0.0, "11-10": 0.0, "11-13": 0.5, "11-14": 0.0}


def test_market_wide_actions_in_grouped_mode(server):
    day = "/v2/aggs/grouped/locale/us/market/stocks/2022-07-18"
    body = synthetic_aggs("", ["2022-07-18"], 100.0)
    body["results"] = [dict(body["results"][0], T=t) for t in ("GOOGL", "GOOG", "MSFT")]
    server.overrides[day] = body

    result = make_source(server).fetch(["GOOGL", "GOOG"], sessions("2022-07-18"))

    assert dict(zip(result.bars["symbol"], result.bars["split_ratio"])) == {"GOOG": 20.0, "GOOGL": 20.0}
    splits_query = next(q for p, q, _ in server.hits if p == "/v3/reference/splits")
    assert "ticker" not in splits_query  # one market-wide call, filtered locally


def test_429_once_then_success_honours_retry_after(server):
    server.fail("/v2/aggs/", status=429, times=1, headers={"Retry-After": "7"})
    source = make_source(server)

    result = source.fetch(["AAPL"], sessions("2005-04-01", "2005-04-04"))

    assert len(result.bars) == 2 and result.rejections == []
    assert server.hits_on(AAPL_RANGE) == 2
    assert source._sleep == [7.0]  # the server's hint, not the 0.01 s backoff
    assert result.requests == 4


def test_repeated_500s_open_the_circuit_and_stop_calling(server):
    server.fail("/v2/aggs/", status=500)
    source = make_source(server, failure_threshold=2)
    days = sessions("2005-04-01", "2005-04-04", "2005-04-05", "2005-04-06", "2005-04-07")

    result = source.fetch(["AAPL", "MSFT", "IBM", "GE"], days)

    assert result.bars.empty
    assert [(r.symbol, r.rule) for r in result.rejections] == [
        (s, RULE_CIRCUIT_OPEN) for s in ("AAPL", "MSFT", "IBM", "GE")]
    assert any("circuit open" in w and "fall back to stored data" in w for w in result.warnings)
    assert len(server.hits) == result.requests == 2  # the two failures; nothing after

    again = source.fetch(["AAPL"], days)
    assert [r.rule for r in again.rejections] == [RULE_CIRCUIT_OPEN]
    assert len(server.hits) == 2 and again.requests == 0


def test_failures_below_the_threshold_are_network_rejections(server):
    server.fail("/v2/aggs/ticker/AAPL", status=503)
    source = make_source(server, failure_threshold=10)

    result = source.fetch(["AAPL"], sessions("2005-04-01", "2005-04-04"))

    assert [(r.symbol, r.rule) for r in result.rejections] == [("AAPL", RULE_NETWORK)]
    assert "HTTP 503" in result.rejections[0].reason
    assert server.hits_on(AAPL_RANGE) == FAST_RETRY.max_attempts
    assert len(source._sleep) == FAST_RETRY.max_attempts - 1


def test_client_errors_are_not_retried(server):
    server.fail("/v2/aggs/", status=403, times=1)
    result = make_source(server).fetch(["AAPL"], sessions("2005-04-01", "2005-04-04"))

    assert [r.rule for r in result.rejections] == [RULE_PROVIDER_ERROR]
    assert server.hits_on(AAPL_RANGE) == 1


def test_slow_answer_times_out_and_is_retried(server):
    server.fail("/v2/aggs/", sleep_s=2.0, times=1)
    source = make_source(server, timeout_s=0.3)

    result = source.fetch(["AAPL"], sessions("2005-04-01", "2005-04-04"))

    assert len(result.bars) == 2 and result.rejections == []
    assert server.hits_on(AAPL_RANGE) == 2  # the slow answer was abandoned and the request sent again


def test_always_slow_answer_ends_as_network_rejection(server):
    server.fail("/v2/aggs/", sleep_s=1.0)
    source = make_source(server, timeout_s=0.2, retry=RetryPolicy(max_attempts=2, base_delay_s=0.01))

    result = source.fetch(["AAPL"], sessions("2005-04-01", "2005-04-04"))

    assert [r.rule for r in result.rejections] == [RULE_NETWORK]
    assert "timed out" in result.rejections[0].reason.lower()
    assert server.hits_on(AAPL_RANGE) == 2
