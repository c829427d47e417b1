"""Alpaca's paper-trading API behind the same ``Broker`` interface (alpaca-py ``TradingClient``).

Our order id travels as Alpaca's ``client_order_id``, so idempotency does not depend on local
state: before submitting, the broker asks Alpaca whether that id exists (and a 422 for a
duplicate id on submission means the same). Orders are market-on-open (``time_in_force=opg``):
decided after the close, filled at the next open, as in the backtest. Decisions go to the
ledger's audit log. Only paper trading: the live endpoint is refused.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from alphatwin_pipelines.calendar import MARKET_TIMEZONE
from alphatwin_pipelines.execution import ledger as L
from alphatwin_pipelines.execution.model import Broker, Fill, Order, SubmitResult

LIVE_HOST = "://api.alpaca.markets"
OUR_PREFIX = "at-"


class AlpacaConfigError(RuntimeError):
    """The Alpaca broker was selected without what it needs."""


class AlpacaBroker(Broker):
    def __init__(self, client, ledger: sa.Engine):
        self.client = client
        self.ledger = ledger

    @classmethod
    def from_keys(cls, api_key: str | None, secret_key: str | None, ledger: sa.Engine, url: str | None = None):
        missing = [name for name, value in (("ALPACA_API_KEY", api_key), ("ALPACA_SECRET_KEY", secret_key)) if not value]
        if missing:
            raise AlpacaConfigError(f"the alpaca broker needs {' and '.join(missing)} in the environment "
                                    "(paper-trading keys from the Alpaca dashboard), or set ALPHATWIN_BROKER=paper")
        if url and LIVE_HOST in url:
            raise AlpacaConfigError(f"ALPACA_BASE_URL={url} is Alpaca's live endpoint; only paper trading is allowed")
        from alpaca.trading.client import TradingClient

        return cls(TradingClient(api_key, secret_key, paper=True, url_override=url or None), ledger)

    def _remote(self, order_id: str):
        from alpaca.common.exceptions import APIError

        try:
            return self.client.get_order_by_client_id(order_id)
        except APIError as error:
            if error.status_code == 404:
                return None
            raise

    def submit(self, orders: list[Order]) -> list[SubmitResult]:
        from alpaca.common.exceptions import APIError
        from alpaca.trading.enums import OrderSide, TimeInForce
        from alpaca.trading.requests import MarketOrderRequest

        results = []
        for order in orders:
            remote = self._remote(order.order_id)
            if remote is None:
                request = MarketOrderRequest(symbol=order.symbol, qty=int(order.qty), client_order_id=order.order_id,
                                             side=OrderSide.BUY if order.side == "buy" else OrderSide.SELL,
                                             time_in_force=TimeInForce.OPG)
                try:
                    remote = self.client.submit_order(request)
                    status, detail = "submitted", {**order.audit_detail(), "alpaca_id": str(remote.id)}
                except APIError as error:
                    if error.status_code != 422 or "client_order_id" not in str(error):
                        raise
                    status, detail = "duplicate", f"Alpaca already has client_order_id {order.order_id}: {error}"
            else:
                status, detail = "duplicate", f"Alpaca already has {order.order_id} (status {remote.status.value})"
            with self.ledger.begin() as conn:
                L.audit(conn, "submitted" if status == "submitted" else "duplicate_skipped", order_id=order.order_id,
                        allocation_version=order.allocation_version, symbol=order.symbol, detail=detail)
            results.append(SubmitResult(order.order_id, order.symbol, status, detail if isinstance(detail, str) else ""))
        return results

    def positions(self) -> dict[str, int]:
        out = {}
        for p in self.client.get_all_positions():
            qty = int(abs(float(p.qty)))
            out[p.symbol] = qty if p.side.value == "long" else -qty
        return dict(sorted(out.items()))

    def cash(self) -> float:
        return float(self.client.get_account().cash)

    def _orders(self, status: str) -> list:
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest

        found = self.client.get_orders(GetOrdersRequest(status=QueryOrderStatus(status), limit=500))
        return [o for o in found if (o.client_order_id or "").startswith(OUR_PREFIX)]

    def fills(self) -> list[Fill]:
        fills = []
        for o in self._orders("closed"):
            if o.filled_at is None or not float(o.filled_qty or 0):
                continue
            session = o.filled_at.astimezone(_exchange_tz()).date().isoformat()
            fills.append(Fill(o.client_order_id, o.symbol, o.side.value, int(float(o.filled_qty)),
                              float(o.filled_avg_price), session))
        return sorted(fills, key=lambda f: (f.session, f.order_id))

    def collect_fills(self) -> list[Fill]:
        """Fills not yet in the audit log; each is recorded as ``filled`` once."""
        with self.ledger.connect() as conn:
            known = set(conn.execute(sa.select(L.audit_log.c.order_id).where(L.audit_log.c.event == "filled")).scalars())
        new = [f for f in self.fills() if f.order_id not in known]
        with self.ledger.begin() as conn:
            for f in new:
                L.audit(conn, "filled", order_id=f.order_id, symbol=f.symbol,
                        detail={"session": f.session, "qty": f.qty, "price": f.price, "broker": "alpaca"})
        return new

    def _submitted(self) -> dict[str, dict]:
        with self.ledger.connect() as conn:
            rows = conn.execute(sa.select(L.audit_log).where(L.audit_log.c.event == "submitted"))
            return {r.order_id: {**json.loads(r.detail), "allocation_version": r.allocation_version} for r in rows}

    def pending(self) -> list[Order]:
        """Our open orders at Alpaca (those this ledger submitted; others are not ours to touch)."""
        mine = self._submitted()
        out = []
        for o in self._orders("open"):
            d = mine.get(o.client_order_id)
            if d is not None:
                out.append(Order(d["allocation_version"], o.symbol, o.side.value, int(float(o.qty)),
                                 float(d["reference_price"]), d["session"], float(d.get("target_weight", 0.0))))
        return out

    def cancel(self, order_id: str, reason: str = "") -> bool:
        remote = self._remote(order_id)
        if remote is None or remote.status.value not in ("new", "accepted", "pending_new", "partially_filled"):
            return False
        self.client.cancel_order_by_id(remote.id)
        with self.ledger.begin() as conn:
            L.audit(conn, "cancelled", order_id=order_id, symbol=remote.symbol, detail=reason or "cancelled")
        return True


def _exchange_tz():
    from zoneinfo import ZoneInfo

    return ZoneInfo(MARKET_TIMEZONE)
