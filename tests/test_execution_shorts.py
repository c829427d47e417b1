"""Short positions in the paper ledger, and their refusal where the broker cannot short."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from alphatwin_pipelines.execution import AccountState, Limits, PaperBroker, check_orders, default_ledger_url, generate_orders


def allocation(weights: dict[str, float]) -> pd.DataFrame:
    rows = [{"allocation_version": "v-short", "as_of": "2024-07-01", "method": "test", "kind": "symbol", "name": s, "weight": w, "sector": "Tech",
             "risk_contribution": 0.0, "spec_hashes": '["s1"]', "scanner_partition": "2024-06-28", "cluster": 0}
            for s, w in weights.items()]
    return pd.DataFrame(rows)


def test_a_negative_target_weight_opens_a_real_short_in_the_paper_ledger(tmp_path):
    broker = PaperBroker(default_ledger_url(tmp_path))
    assert broker.can_short
    prices = {"AAA": 100.0, "BBB": 50.0}
    orders, _ = generate_orders(allocation({"AAA": 0.05, "BBB": -0.05}), broker.account(), prices, "2024-07-01")
    assert {(o.symbol, o.side, o.qty) for o in orders} == {("AAA", "buy", 50), ("BBB", "sell", 100)}
    decision = check_orders(orders, broker.account(), prices, Limits(), can_short=broker.can_short)
    assert not decision.rejected
    broker.submit(decision.accepted)
    fills = broker.settle("2024-07-02", {"AAA": 100.0, "BBB": 50.0})
    assert len(fills) == 2 and broker.positions() == {"AAA": 50, "BBB": -100}
    short = next(f for f in fills if f.symbol == "BBB")
    assert short.price < 50.0  # a sale fills below the open (slippage)
    # the short sale's proceeds are cash; the short is marked at the close: equity falls when BBB rises
    account = broker.account()
    flat = account.equity({"AAA": 100.0, "BBB": 50.0})
    assert account.equity({"AAA": 100.0, "BBB": 55.0}) == pytest.approx(flat - 100 * 5.0)
    expected_cash = 100_000.0 - sum(f.signed_qty * f.price + f.fees for f in fills)
    assert account.cash == pytest.approx(expected_cash, rel=1e-12) and account.cash > 100_000.0 - 50 * 100.0


def test_a_broker_that_cannot_short_refuses_the_order_with_a_clear_reason():
    account = AccountState(cash=100_000.0, positions={"BBB": 20})
    prices = {"BBB": 50.0}
    orders, _ = generate_orders(allocation({"BBB": -0.05}), account, prices, "2024-07-01")
    assert [(o.side, o.qty) for o in orders] == [("sell", 121)]  # 5 % of 101,000 equity at 50 is 101 shares short
    decision = check_orders(orders, account, prices, Limits(), can_short=False, broker_name="AlpacaBroker account")
    assert not decision.accepted
    reason = decision.rejected[0][1]
    assert "BBB" in reason and "short position of -101 shares" in reason and "AlpacaBroker account cannot short" in reason
    # selling down to flat is no short: it passes
    orders, _ = generate_orders(allocation({"BBB": 0.0}), account, prices, "2024-07-01")
    assert check_orders(orders, account, prices, Limits(), can_short=False).accepted


def test_paper_shorts_pay_borrow_once_per_session(tmp_path):
    from alphatwin_pipelines.execution import Order, read_audit

    broker = PaperBroker(default_ledger_url(tmp_path))
    broker.submit([Order("v1", "BBB", "sell", 100, 50.0, "2024-07-01", spec_hashes=("s1",), scanner_partition="x")])
    broker.settle("2024-07-02", {"BBB": 50.0})
    cash = broker.cash()
    amount = broker.charge_borrow("2024-07-02", {"BBB": 60.0}, borrow_bps=252.0)
    assert amount == pytest.approx(100 * 60.0 * 252.0 / 1e4 / 252)  # 1 bp of 6,000 a session
    assert broker.charge_borrow("2024-07-02", {"BBB": 60.0}, borrow_bps=252.0) == 0.0  # a re-run charges nothing
    assert broker.cash() == pytest.approx(cash - amount)
    assert broker.charge_borrow("2024-07-03", {"BBB": 60.0}, borrow_bps=252.0) == pytest.approx(amount)
    assert [json.loads(a["detail"])["session"] for a in read_audit(broker.engine, "borrow")] == ["2024-07-02", "2024-07-03"]
