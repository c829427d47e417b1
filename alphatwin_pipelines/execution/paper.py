"""The paper broker: a simulated account kept in the SQL ledger, filling like the backtest.

An order decided after the close of session t stays pending until the open of a later session
is known; ``settle(session, opens)`` then fills it at that open moved against the order by
``CostModel.slippage_fraction`` (slippage + square-root impact) and charges ``CostModel.fees``,
exactly as ``alphatwin_pipelines.backtest`` fills a signal at the next open. Each fill and the
position, cash and audit changes it implies commit in one transaction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import sqlalchemy as sa

from alphatwin_pipelines.backtest.costs import CostModel
from alphatwin_pipelines.execution import ledger as L
from alphatwin_pipelines.execution.model import Broker, Fill, Order, SubmitResult


def fill_price(side: str, open_price: float, qty: int, costs: CostModel, adv: float | None) -> float:
    """The backtest's fill: the open moved against the order by slippage + impact."""
    slip = float(costs.slippage_fraction(qty * open_price, float("nan") if adv is None else adv))
    return open_price * (1 + slip) if side == "buy" else open_price * (1 - slip)


def _order_from_row(row) -> Order:
    return Order(
        allocation_version=row.allocation_version, symbol=row.symbol, side=row.side, qty=row.qty,
        reference_price=row.reference_price, session=row.session, target_weight=row.target_weight,
        spec_hashes=tuple(json.loads(row.spec_hashes)), scanner_partition=row.scanner_partition,
    )


class PaperBroker(Broker):
    # Shorts are real here: a sale beyond the position leaves a negative quantity, the proceeds
    # go to cash and the equity marks the short at the close.
    can_short = True

    def __init__(self, url: str, *, initial_cash: float = 100_000.0, costs: CostModel | None = None):
        self.url = url
        self.costs = costs or CostModel()
        self.engine = L.open_ledger(url, initial_cash=initial_cash)

    def submit(self, orders: list[Order]) -> list[SubmitResult]:
        """One transaction per order (order row + audit row), so a crash loses no accepted order."""
        results = []
        for order in orders:
            try:
                with self.engine.begin() as conn:
                    conn.execute(L.orders.insert().values(
                        order_id=order.order_id, allocation_version=order.allocation_version,
                        symbol=order.symbol, side=order.side, qty=int(order.qty),
                        reference_price=float(order.reference_price), target_weight=float(order.target_weight),
                        session=order.session, status="pending", spec_hashes=order.spec_hashes_json,
                        scanner_partition=order.scanner_partition,
                    ))
                    L.audit(conn, "submitted", order_id=order.order_id, allocation_version=order.allocation_version,
                            symbol=order.symbol, detail=order.audit_detail())
                results.append(SubmitResult(order.order_id, order.symbol, "submitted"))
            except sa.exc.IntegrityError:
                detail = f"order {order.order_id} ({order.side} {order.symbol}) is already in the ledger"
                with self.engine.begin() as conn:
                    L.audit(conn, "duplicate_skipped", order_id=order.order_id,
                            allocation_version=order.allocation_version, symbol=order.symbol, detail=detail)
                results.append(SubmitResult(order.order_id, order.symbol, "duplicate", detail))
        return results

    def charge_borrow(self, session: str, closes: Mapping[str, float], borrow_bps: float) -> float:
        """Charge one session's borrow on the short positions (``borrow_bps`` a year of their value at
        ``closes``, / 252), once per session: a re-run of the same session charges nothing."""
        with self.engine.begin() as conn:
            done = conn.execute(sa.select(L.audit_log.c.seq).where(L.audit_log.c.event == "borrow")
                                .where(L.audit_log.c.detail.like(f'%"session": "{session}"%'))).first()
            shorts = {r.symbol: -int(r.qty) for r in conn.execute(sa.select(L.positions).where(L.positions.c.qty < 0))}
            if done is not None or not shorts:
                return 0.0
            value = sum(q * float(closes[s]) for s, q in shorts.items())
            amount = value * borrow_bps / 1e4 / 252
            _move_cash(conn, -amount)
            L.audit(conn, "borrow", detail={"session": session, "short_value": value, "borrow_bps": borrow_bps,
                                            "amount": amount})
        return amount

    def positions(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(L.positions).where(L.positions.c.qty != 0).order_by(L.positions.c.symbol))
            return {r.symbol: int(r.qty) for r in rows}

    def cash(self) -> float:
        with self.engine.connect() as conn:
            return float(conn.execute(sa.select(L.cash.c.amount).where(L.cash.c.account == L.ACCOUNT)).scalar_one())

    def fills(self) -> list[Fill]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(L.fills).order_by(L.fills.c.session, L.fills.c.order_id))
            return [Fill(r.order_id, r.symbol, r.side, r.qty, r.price, r.session, r.fees, r.reference_open)
                    for r in rows]

    def orders(self, status: str | None = None) -> list[dict]:
        query = sa.select(L.orders).order_by(L.orders.c.session, L.orders.c.order_id)
        if status is not None:
            query = query.where(L.orders.c.status == status)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def pending(self) -> list[Order]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(L.orders).where(L.orders.c.status == "pending")
                                .order_by(L.orders.c.session, L.orders.c.order_id))
            return [_order_from_row(r) for r in rows]

    def cancel(self, order_id: str, reason: str = "") -> bool:
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(L.orders).where(L.orders.c.order_id == order_id)).first()
            done = conn.execute(L.orders.update().where(L.orders.c.order_id == order_id)
                                .where(L.orders.c.status == "pending").values(status="cancelled")).rowcount == 1
            if done:
                L.audit(conn, "cancelled", order_id=order_id, allocation_version=row.allocation_version,
                        symbol=row.symbol, detail=reason or "cancelled")
        return done

    def settle(self, session: str, opens: Mapping[str, float], adv: Mapping[str, float] | None = None) -> list[Fill]:
        """Fill every order decided before ``session`` whose symbol has a valid open in ``opens``.

        Orders without a usable open stay pending (as the backtest waits over missing bars).
        """
        new = []
        for order in self.pending():
            open_price = opens.get(order.symbol)
            if order.session >= session or open_price is None or not (math.isfinite(open_price) and open_price > 0):
                continue
            price = fill_price(order.side, float(open_price), order.qty, self.costs, (adv or {}).get(order.symbol))
            fill = Fill(order.order_id, order.symbol, order.side, order.qty, price, session,
                        self.costs.fees * order.qty * price, float(open_price))
            if self._record_fill(order, fill):
                new.append(fill)
        with self.engine.begin() as conn:
            L.audit(conn, "settled", detail={"session": session, "fills": len(new),
                                             "still_pending": len(self.pending())})
        return new

    def _record_fill(self, order: Order, fill: Fill) -> bool:
        with self.engine.begin() as conn:
            claimed = conn.execute(L.orders.update().where(L.orders.c.order_id == order.order_id)
                                   .where(L.orders.c.status == "pending").values(status="filled")).rowcount
            if claimed != 1:
                return False
            conn.execute(L.fills.insert().values(
                fill_id=f"fill-{order.order_id}", order_id=order.order_id, symbol=fill.symbol, side=fill.side,
                qty=fill.qty, price=fill.price, reference_open=fill.reference_open, fees=fill.fees,
                session=fill.session,
            ))
            _move_position(conn, fill.symbol, fill.signed_qty)
            _move_cash(conn, -fill.signed_qty * fill.price - fill.fees)
            L.audit(conn, "filled", order_id=order.order_id, allocation_version=order.allocation_version,
                    symbol=order.symbol, detail={"session": fill.session, "qty": fill.qty, "price": fill.price,
                                                 "open": fill.reference_open, "fees": fill.fees})
        return True


def _move_position(conn: sa.Connection, symbol: str, delta: int) -> None:
    current = conn.execute(sa.select(L.positions.c.qty).where(L.positions.c.symbol == symbol)).first()
    if current is None:
        conn.execute(L.positions.insert().values(symbol=symbol, qty=int(delta)))
    else:
        conn.execute(L.positions.update().where(L.positions.c.symbol == symbol).values(qty=int(current[0]) + delta))


def _move_cash(conn: sa.Connection, delta: float) -> None:
    conn.execute(L.cash.update().where(L.cash.c.account == L.ACCOUNT).values(amount=L.cash.c.amount + float(delta)))
