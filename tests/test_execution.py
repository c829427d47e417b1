"""Paper execution engine: ledger, order sizing, next-open fills, safeguards, audit log, crash safety."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from alphatwin_pipelines.execution import (
    HARD_BOUNDS, AccountState, Fill, LimitConfigError, Limits, Order, PaperBroker, check_orders,
    default_ledger_url, execute_allocation, generate_orders, monitor_fills, open_ledger, read_audit,
)
from alphatwin_pipelines.execution.safeguards import correlated_groups
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import CLEANED
from test_execution_support import bars_at, universe_symbols, write_allocation

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def order(symbol="AAA", side="buy", qty=10, price=100.0, version="v1", session="2024-07-01"):
    return Order(version, symbol, side, qty, price, session, spec_hashes=("s1",), scanner_partition="2024-06-28")


@pytest.fixture
def broker(tmp_path) -> PaperBroker:
    return PaperBroker(default_ledger_url(tmp_path))


def test_resubmitting_an_order_is_recognised_as_a_duplicate(broker):
    first = broker.submit([order(), order("BBB", "sell", 5)])
    again = broker.submit([order(qty=11)])  # same version, symbol and side: same id, whatever the size
    assert [r.status for r in first] == ["submitted", "submitted"]
    assert [r.status for r in again] == ["duplicate"] and again[0].order_id == first[0].order_id
    rows = broker.orders()
    assert len(rows) == 2 and {r["qty"] for r in rows} == {10, 5}
    assert rows[0]["allocation_version"] == "v1" and json.loads(rows[0]["spec_hashes"]) == ["s1"]
    assert rows[0]["scanner_partition"] == "2024-06-28"
    assert [a["order_id"] for a in read_audit(broker.engine, "duplicate_skipped")] == [first[0].order_id]


def test_orders_wait_for_the_next_open_and_fill_like_the_backtest(broker):
    broker.submit([order("AAA", "buy", 10, 100.0), order("BBB", "buy", 4, 50.0)])
    assert broker.settle("2024-07-01", {"AAA": 101.0, "BBB": 49.0}) == []  # decided at that close: not yet
    fills = broker.settle("2024-07-02", {"AAA": 102.0}, adv={"AAA": 1_020_000.0})  # BBB has no open: waits
    # 5 bp slippage + 100 bp * sqrt(1020 / 1_020_000) impact = 5 + 3.1623 bp; 5 bp fees on the traded value.
    expected = 102.0 * (1 + (5 + 100 * math.sqrt(1e-3)) / 1e4)
    assert len(fills) == 1 and fills[0].price == pytest.approx(expected, rel=1e-12)
    assert broker.positions() == {"AAA": 10}
    assert broker.cash() == pytest.approx(100_000 - 10 * expected * 1.0005, rel=1e-12)
    assert [o.symbol for o in broker.pending()] == ["BBB"]
    later = broker.settle("2024-07-03", {"BBB": 48.0})  # unknown ADV: participation 1, full 100 bp impact
    assert later[0].price == pytest.approx(48.0 * 1.0105) and broker.positions() == {"AAA": 10, "BBB": 4}
    assert broker.settle("2024-07-05", {"AAA": 1.0, "BBB": 1.0}) == [] and len(broker.fills()) == 2


def test_sells_fill_below_the_open_and_cancel_only_touches_pending(broker):
    broker.submit([order("AAA", "sell", 3, 20.0)])
    pending_id = broker.pending()[0].order_id
    fill = broker.settle("2024-07-02", {"AAA": 20.0})[0]
    assert fill.price == pytest.approx(20.0 * (1 - 0.0105)) and broker.positions() == {"AAA": -3}
    assert broker.cancel(pending_id) is False
    broker.submit([order("CCC", "buy", 1, 10.0)])
    assert broker.cancel(broker.pending()[0].order_id, "test") is True and broker.pending() == []


def test_generate_orders_sizes_whole_shares_sells_unlisted_and_skips_dust(research_dir):
    symbols = universe_symbols(research_dir, 4)
    session = "2024-06-28"
    closes = bars_at(research_dir, session)["close"].to_dict()
    account = AccountState(cash=50_000.0, positions={symbols[1]: 7, symbols[3]: 12})
    equity = 50_000.0 + 7 * closes[symbols[1]] + 12 * closes[symbols[3]]
    two_shares = 2.5 * closes[symbols[2]] / equity  # a 2-share change, below a 3-share minimum notional
    version = write_allocation(research_dir, session, {symbols[0]: 0.2, symbols[1]: 0.1, symbols[2]: two_shares})
    allocation = pd.read_parquet(research_dir / "portfolio_allocations" / f"{version}.parquet")
    orders, dust = generate_orders(allocation, account, closes, session, min_notional=3 * closes[symbols[2]])
    by_symbol = {o.symbol: o for o in orders}
    assert by_symbol[symbols[0]].signed_qty == int(0.2 * equity // closes[symbols[0]])
    assert by_symbol[symbols[1]].signed_qty == int(0.1 * equity // closes[symbols[1]]) - 7
    assert by_symbol[symbols[3]].side == "sell" and by_symbol[symbols[3]].qty == 12
    assert symbols[2] not in by_symbol and [(d.symbol, d.qty) for d in dust] == [(symbols[2], 2)]
    assert all(o.allocation_version == version and o.session == session for o in orders)
    with pytest.raises(ValueError, match=f"no valid close for {symbols[0]}"):
        generate_orders(allocation, account, {s: p for s, p in closes.items() if s != symbols[0]}, session)
    with pytest.raises(ValueError, match="lacks contract column"):
        generate_orders(allocation.drop(columns=["spec_hashes"]), account, closes, session)


PRICES = {"AAA": 100.0, "BBB": 100.0, "CCC": 100.0, "DDD": 100.0}
FLAT = AccountState(cash=100_000.0)


def test_position_size_limit_rejects_with_reason():
    decision = check_orders([order("AAA", qty=120), order("BBB", qty=90)], FLAT, PRICES, Limits())
    assert [o.symbol for o in decision.accepted] == ["BBB"]
    assert "position in AAA would be 12.00% of equity, above max_position_weight 10.00%" in decision.rejected[0][1]


def test_order_notional_limit_applies_to_every_order():
    held = AccountState(cash=0.0, positions={"AAA": 400})
    decision = check_orders([order("AAA", "sell", 300)], held, PRICES, Limits(max_order_notional=20_000))
    assert "order notional $30,000.00 exceeds max_order_notional $20,000.00" in decision.rejected[0][1]


def test_daily_loss_limit_blocks_risk_but_lets_positions_shrink():
    held = AccountState(cash=90_000.0, positions={"AAA": 50})
    decision = check_orders([order("AAA", "sell", 20), order("BBB", qty=10)], held, PRICES, Limits(),
                            daily_return=-0.05)
    assert [o.symbol for o in decision.accepted] == ["AAA"]
    assert "daily loss 5.00% since the previous equity mark exceeds max_daily_loss 3.00%" in decision.rejected[0][1]
    assert check_orders([order("BBB", qty=10)], held, PRICES, Limits(), daily_return=-0.02).rejected == []


def test_gross_exposure_limit_stops_the_order_that_crosses_it():
    limits = Limits(max_position_weight=0.25, max_gross_exposure=0.5)
    decision = check_orders([order(s, qty=200) for s in ("AAA", "BBB", "CCC")], FLAT, PRICES, limits)
    assert [o.symbol for o in decision.accepted] == ["AAA", "BBB"]
    assert decision.rejected[0][1] == "gross exposure would be 60.00%, above max_gross_exposure 50.00%"


def test_net_exposure_limit_counts_shorts_against_longs():
    short = AccountState(cash=120_000.0, positions={"DDD": -200})  # equity 100k, net -20 %
    limits = Limits(max_position_weight=0.25, max_net_exposure=0.3)
    decision = check_orders([order(s, qty=200) for s in ("AAA", "BBB", "CCC")], short, PRICES, limits)
    assert [o.symbol for o in decision.accepted] == ["AAA", "BBB"]
    assert decision.rejected[0][1] == "net exposure would be 40.00%, above max_net_exposure 30.00%"


def _returns(seed=3, n=80):
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 0.01, n)
    return pd.DataFrame({
        "AAA": base, "BBB": base + rng.normal(0, 0.001, n), "CCC": rng.normal(0, 0.01, n),
        "DDD": 0.5 * base + rng.normal(0, 0.0005, n),
    }, index=pd.bdate_range("2024-01-01", periods=n))


def test_correlation_groups_chain_highly_correlated_symbols_only():
    groups = correlated_groups(_returns(), threshold=0.8, lookback=60)
    assert groups["AAA"] == frozenset({"AAA", "BBB", "DDD"}) and "CCC" not in groups


def test_correlated_exposure_limit_rejects_the_order_that_overloads_a_group():
    limits = Limits(max_correlated_weight=0.25)
    decision = check_orders([order("AAA", qty=100), order("BBB", qty=100), order("CCC", qty=100),
                             order("DDD", qty=100)], FLAT, PRICES, limits, returns=_returns())
    assert [o.symbol for o in decision.accepted] == ["AAA", "BBB", "CCC"]
    assert decision.rejected[0][0].symbol == "DDD"
    assert "correlated group ['AAA', 'BBB', 'DDD']" in decision.rejected[0][1]
    assert "would hold 30.00% of equity, above max_correlated_weight 25.00%" in decision.rejected[0][1]


@pytest.mark.parametrize("name", sorted(HARD_BOUNDS))
def test_configuration_cannot_exceed_the_hard_bounds(name):
    with pytest.raises(LimitConfigError, match=f"{name}=.* exceeds the hard-coded bound {HARD_BOUNDS[name]}"):
        Limits(**{name: HARD_BOUNDS[name] * 1.01})
    assert getattr(Limits(**{name: HARD_BOUNDS[name]}), name) == HARD_BOUNDS[name]


def test_monitor_flags_fills_worse_than_the_backtest_assumed():
    opens = {("2024-07-02", "AAA"): 100.0, ("2024-07-02", "BBB"): 50.0}
    expected_buy = 100.0 * 1.0105  # ADV unknown: 5 bp slippage + 100 bp impact
    fills = [Fill("o1", "AAA", "buy", 5, expected_buy * 1.004, "2024-07-02"),
             Fill("o2", "BBB", "sell", 5, 50.0 * (1 - 0.0105) * 0.9999, "2024-07-02"),
             Fill("o3", "CCC", "buy", 5, 1.0, "2024-07-02")]
    checks = monitor_fills(fills, opens, threshold_bps=25)
    assert [(c.symbol, c.flagged) for c in checks] == [("AAA", True), ("BBB", False)]
    assert checks[0].divergence_bps == pytest.approx(40.0, abs=1e-6)
    assert checks[1].divergence_bps == pytest.approx(1.0, abs=1e-6)


def _assert_append_only(engine):
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO audit_log (recorded_at, event, detail) VALUES ('t', 'run', '{}')"))
    for statement in ("UPDATE audit_log SET detail = 'forged'", "DELETE FROM audit_log"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with engine.begin() as conn:
                conn.execute(sa.text(statement))
    assert [r["event"] for r in read_audit(engine)] == ["opened", "run"]
    assert all(r["detail"] != "forged" for r in read_audit(engine))


def test_audit_log_rows_cannot_be_changed_in_sqlite(tmp_path):
    _assert_append_only(open_ledger(default_ledger_url(tmp_path)))


def test_audit_log_rows_cannot_be_changed_in_postgres():
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=3)
    except psycopg2.OperationalError as error:
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 ({error})")
    admin.autocommit = True
    name = f"ledger_{uuid.uuid4().hex[:12]}"
    admin.cursor().execute(f"CREATE DATABASE {name}")
    engine = None
    try:
        url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
        engine = open_ledger(url)
        _assert_append_only(engine)
        with pytest.raises(sa.exc.DBAPIError, match="append-only: TRUNCATE"):
            with engine.begin() as conn:
                conn.execute(sa.text("TRUNCATE audit_log"))
        broker = PaperBroker(url)  # reopening keeps the one cash row and the guards
        assert [r.status for r in broker.submit([order(), order()])] == ["submitted", "duplicate"]
        assert len(broker.settle("2024-07-02", {"AAA": 100.0})) == 1 and broker.settle("2024-07-03", {"AAA": 1.0}) == []
        assert broker.positions() == {"AAA": 10} and broker.cash() == pytest.approx(100_000 - 1000 * 1.0105 * 1.0005)
        broker.engine.dispose()
    finally:
        if engine is not None:
            engine.dispose()
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


CRASHING_CLIENT = """
import json, os, sys
from alphatwin_pipelines.execution import PaperBroker, Order, ledger, paper
url, mode = sys.argv[1], sys.argv[2]
orders = [Order("v-crash", s, "buy", 10, 100.0, "2024-07-01") for s in ("AAA", "BBB", "CCC")]
broker = PaperBroker(url)
if mode == "die_in_second_submission":
    real = ledger.audit
    seen = []
    def audit(conn, event, **kw):
        seen.append(event)
        if seen.count("submitted") == 2:
            os._exit(17)  # the second order's row is written but its transaction never commits
        return real(conn, event, **kw)
    ledger.audit = audit
    broker.submit(orders)
elif mode == "submit_then_wait":
    broker.submit(orders)
    print("SUBMITTED", flush=True)
    sys.stdin.read()  # the parent kills us here, between submission and fill
elif mode == "die_while_recording_fill":
    def move_cash(conn, delta):
        os._exit(18)  # fill row, order status and position written, cash not yet: nothing commits
    paper._move_cash = move_cash
    broker.settle("2024-07-02", {"AAA": 100.0, "BBB": 100.0, "CCC": 100.0})
"""


def _client(url, mode):
    env = {**os.environ, "PYTHONPATH": REPO_ROOT}
    return subprocess.Popen([sys.executable, "-c", CRASHING_CLIENT, url, mode], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)


def test_a_crash_between_submission_and_fill_loses_and_duplicates_nothing(tmp_path):
    url = default_ledger_url(tmp_path)
    died = _client(url, "die_in_second_submission")
    assert died.wait(60) == 17
    broker = PaperBroker(url)
    assert [o["symbol"] for o in broker.orders()] == ["AAA"]
    killed = _client(url, "submit_then_wait")
    assert killed.stdout.readline().strip() == "SUBMITTED"
    killed.kill()
    killed.wait(30)
    assert [o["status"] for o in broker.orders()] == ["pending"] * 3 and broker.fills() == []
    assert [r.status for r in broker.submit([Order("v-crash", "AAA", "buy", 10, 100.0, "2024-07-01")])] == ["duplicate"]
    crashed = _client(url, "die_while_recording_fill")
    assert crashed.wait(60) == 18
    assert broker.fills() == [] and broker.positions() == {} and broker.cash() == 100_000.0
    assert len(broker.pending()) == 3
    fills = broker.settle("2024-07-02", {"AAA": 100.0, "BBB": 100.0, "CCC": 100.0})
    assert broker.settle("2024-07-03", {"AAA": 100.0, "BBB": 100.0, "CCC": 100.0}) == []
    assert len(fills) == 3 and broker.positions() == {"AAA": 10, "BBB": 10, "CCC": 10}
    audit = read_audit(broker.engine)
    assert sum(a["event"] == "submitted" for a in audit) == 3 and sum(a["event"] == "filled" for a in audit) == 3
    assert len(broker.orders()) == 3 and len({f.order_id for f in broker.fills()}) == 3


def test_a_held_symbol_without_a_bar_on_the_session_is_marked_at_its_last_close(research_dir):
    held, other = universe_symbols(research_dir, 2)
    last_close = bars_at(research_dir, "2024-06-27")["close"][held]
    path = TableStore(research_dir).partition_path(CLEANED, "2024-06-28")
    pq.write_table(pq.read_table(path).filter(pc.field("symbol") != held), path)  # its bar went missing
    broker = PaperBroker(default_ledger_url(research_dir))
    broker.submit([Order("v0", held, "buy", 10, 50.0, "2024-06-26")])
    broker.settle("2024-06-27", {held: 50.0})
    cash = broker.cash()
    report = execute_allocation(research_dir, broker, broker.engine, write_allocation(research_dir, "2024-06-28",
                                                                                       {other: 0.05}))
    assert report.equity == pytest.approx(cash + 10 * last_close)
    sell = next(o for o in broker.pending() if o.symbol == held)
    assert sell.side == "sell" and sell.qty == 10 and sell.reference_price == last_close
