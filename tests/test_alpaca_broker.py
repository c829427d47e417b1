"""AlpacaBroker through alpaca-py against a local HTTP server speaking Alpaca's paper API shapes."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from alphatwin_pipelines.execution import default_ledger_url, execute_allocation, open_ledger, read_audit
from alphatwin_pipelines.execution.alpaca import AlpacaBroker, AlpacaConfigError
from assets.resources import BrokerResource
from test_execution_support import bars_at, universe_symbols, write_allocation

OPEN_STATES = {"accepted", "new"}


class FakeAlpaca:
    """Account, positions and orders of one paper account; records every request it receives."""

    def __init__(self, cash: float = 100_000.0):
        self.cash, self.positions, self.orders, self.requests = cash, {}, {}, []

    def account(self) -> dict:
        return {"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, "account")), "account_number": "PA0000TEST",
                "status": "ACTIVE", "currency": "USD", "cash": f"{self.cash:.2f}", "buying_power": f"{self.cash:.2f}",
                "pattern_day_trader": False, "trading_blocked": False, "shorting_enabled": True,
                "created_at": "2024-01-02T14:00:00Z"}

    def position(self, symbol: str, qty: int, cost: float) -> dict:
        return {"asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, symbol)), "symbol": symbol, "exchange": "NYSE",
                "asset_class": "us_equity", "avg_entry_price": f"{cost / qty:.4f}", "qty": str(abs(qty)),
                "side": "long" if qty > 0 else "short", "cost_basis": f"{cost:.2f}"}

    def new_order(self, body: dict) -> dict:
        now = "2024-06-28T20:30:00Z"
        return {"id": str(uuid.uuid4()), "client_order_id": body["client_order_id"], "created_at": now,
                "updated_at": now, "submitted_at": now, "filled_at": None, "asset_id": None, "symbol": body["symbol"],
                "asset_class": "us_equity", "qty": str(body["qty"]), "filled_qty": "0", "filled_avg_price": None,
                "order_class": "simple", "order_type": "market", "type": "market", "side": body["side"],
                "time_in_force": body["time_in_force"], "status": "accepted", "extended_hours": False}

    def fill(self, client_order_id: str, price: float, filled_at: str) -> None:
        order = self.orders[client_order_id]
        qty = int(float(order["qty"])) * (1 if order["side"] == "buy" else -1)
        order.update(status="filled", filled_qty=order["qty"], filled_avg_price=f"{price:.6f}", filled_at=filled_at)
        held, cost = self.positions.get(order["symbol"], (0, 0.0))
        self.positions[order["symbol"]] = (held + qty, cost + qty * price)
        self.cash -= qty * price


def _handler(alpaca: FakeAlpaca):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _reply(self, status: int, payload) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _record(self, body=None):
            url = urlparse(self.path)
            alpaca.requests.append({"method": self.command, "path": url.path, "query": parse_qs(url.query),
                                    "key": self.headers.get("APCA-API-KEY-ID"), "body": body})
            return url.path, parse_qs(url.query)

        def do_GET(self):
            path, query = self._record()
            if path == "/v2/account":
                return self._reply(200, alpaca.account())
            if path == "/v2/positions":
                return self._reply(200, [alpaca.position(s, q, c) for s, (q, c) in sorted(alpaca.positions.items()) if q])
            if path == "/v2/orders:by_client_order_id":
                order = alpaca.orders.get(query["client_order_id"][0])
                return self._reply(200, order) if order else self._reply(404, {"code": 40410000, "message": "order not found"})
            if path == "/v2/orders":
                wanted = query.get("status", ["open"])[0]
                return self._reply(200, [o for o in alpaca.orders.values()
                                         if (o["status"] in OPEN_STATES) == (wanted == "open") or wanted == "all"])
            self._reply(404, {"code": 40400000, "message": f"no route {path}"})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self._record(body)
            if body["client_order_id"] in alpaca.orders:
                return self._reply(422, {"code": 40010001, "message": "client_order_id must be unique"})
            alpaca.orders[body["client_order_id"]] = order = alpaca.new_order(body)
            self._reply(200, order)

        def do_DELETE(self):
            path, _ = self._record()
            remote_id = path.rsplit("/", 1)[-1]
            for order in alpaca.orders.values():
                if order["id"] == remote_id and order["status"] in OPEN_STATES:
                    order["status"] = "canceled"
                    self.send_response(204)
                    self.end_headers()
                    return
            self._reply(422, {"code": 42210000, "message": "order is not cancelable"})

    return Handler


@pytest.fixture
def alpaca_server():
    alpaca = FakeAlpaca()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(alpaca))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    alpaca.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield alpaca
    server.shutdown()
    server.server_close()


def test_alpaca_needs_keys_and_refuses_the_live_endpoint(tmp_path):
    with pytest.raises(AlpacaConfigError, match="needs ALPACA_API_KEY and ALPACA_SECRET_KEY"):
        BrokerResource(kind="alpaca").build(str(tmp_path))
    with pytest.raises(AlpacaConfigError, match="needs ALPACA_SECRET_KEY"):
        BrokerResource(kind="alpaca", alpaca_api_key="k").build(str(tmp_path))
    with pytest.raises(AlpacaConfigError, match="live endpoint"):
        BrokerResource(kind="alpaca", alpaca_api_key="k", alpaca_secret_key="s",
                       alpaca_base_url="https://api.alpaca.markets").build(str(tmp_path))


def test_alpaca_orders_are_idempotent_cancelled_when_superseded_and_fills_monitored(research_dir, alpaca_server):
    symbols = universe_symbols(research_dir, 5)
    broker, ledger = BrokerResource(kind="alpaca", alpaca_api_key="key-id", alpaca_secret_key="secret",
                                    alpaca_base_url=alpaca_server.url).build(str(research_dir))
    assert isinstance(broker, AlpacaBroker)
    first = write_allocation(research_dir, "2024-06-27", {s: 0.05 for s in symbols[:3]})
    report = execute_allocation(research_dir, broker, ledger, first)
    posts = [r for r in alpaca_server.requests if r["method"] == "POST"]
    assert len(report.submitted) == 3 and [p["body"]["symbol"] for p in posts] == symbols[:3]
    assert {(p["path"], p["body"]["side"], p["body"]["type"], p["body"]["time_in_force"]) for p in posts} == {
        ("/v2/orders", "buy", "market", "opg")}
    assert [p["body"]["client_order_id"] for p in posts] == report.submitted
    assert {r["key"] for r in alpaca_server.requests} == {"key-id"}
    assert {"/v2/account", "/v2/positions"} <= {r["path"] for r in alpaca_server.requests}

    second = write_allocation(research_dir, "2024-06-28", {s: 0.05 for s in symbols[1:]})
    report = execute_allocation(research_dir, broker, ledger, second)
    deletes = [r["path"] for r in alpaca_server.requests if r["method"] == "DELETE"]
    first_ids = [p["body"]["client_order_id"] for p in posts]
    assert sorted(deletes) == sorted(f"/v2/orders/{alpaca_server.orders[i]['id']}" for i in first_ids)
    assert len(report.cancelled) == 3 and len(report.submitted) == 4  # never filled: buy all four afresh

    opens = bars_at(research_dir, "2024-07-01")["open"]
    new_orders = [o for o in alpaca_server.orders.values() if o["status"] == "accepted"]
    for order in new_orders:  # the open of 2024-07-01; the first symbol fills 5 % above it
        markup = 1.05 if order["symbol"] == symbols[1] else 1.0005
        alpaca_server.fill(order["client_order_id"], opens[order["symbol"]] * markup, "2024-07-01T13:30:00Z")
    before = len([r for r in alpaca_server.requests if r["method"] == "POST"])
    rerun = execute_allocation(research_dir, broker, ledger, second, divergence_bps=300)
    assert len([r for r in alpaca_server.requests if r["method"] == "POST"]) == before  # nothing sent twice
    assert rerun.submitted == [] and len(rerun.fills) == 4
    assert [(c.symbol, c.flagged) for c in rerun.checks if c.flagged] == [(symbols[1], True)]
    assert 395 <= rerun.checks[[c.symbol for c in rerun.checks].index(symbols[1])].divergence_bps <= 500
    audit = read_audit(ledger)
    assert [a["symbol"] for a in audit if a["event"] == "divergence"] == [symbols[1]]
    assert sum(a["event"] == "filled" for a in audit) == 4 and sum(a["event"] == "cancelled" for a in audit) == 3
    assert execute_allocation(research_dir, broker, ledger, second, divergence_bps=300).fills == []  # recorded once
    assert execute_allocation(research_dir, broker, ledger, first).superseded_by == second


def test_a_duplicate_id_rejected_by_alpaca_is_reported_not_raised(tmp_path, alpaca_server):
    from alphatwin_pipelines.execution import Order

    ledger = open_ledger(default_ledger_url(tmp_path))
    broker = AlpacaBroker.from_keys("key-id", "secret", ledger, url=alpaca_server.url)
    order = Order("v1", "AAA", "buy", 5, 10.0, "2024-06-28")
    alpaca_server.orders[order.order_id] = alpaca_server.new_order(
        {"client_order_id": order.order_id, "symbol": "AAA", "qty": 5, "side": "buy", "time_in_force": "opg"})
    assert [r.status for r in broker.submit([order])] == ["duplicate"]
    assert not any(r["method"] == "POST" for r in alpaca_server.requests)
