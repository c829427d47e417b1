"""The Alpaca export against the local Alpaca stand-in (paper API shapes): today's targets
follow the engine's positions, orders pass the execution job's safeguards, paper only."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines.cards import export
from alphatwin_pipelines.execution.model import AccountState, Order
from alphatwin_pipelines.execution.safeguards import Limits, check_orders
from alphatwin_pipelines.strategies import StrategySpec, generate_state
from cards_support import gappy_bars, load_generated, market_of
from test_alpaca_broker import alpaca_server  # noqa: F401  (the stand-in server fixture)

SPEC = StrategySpec("ma_cross", {"fast": 10, "slow": 60}, 0)
SID = "e" * 64


@pytest.fixture
def setup(tmp_path, monkeypatch, alpaca_server):  # noqa: F811
    bars = gappy_bars()
    path = tmp_path / "bars.csv"
    bars.to_csv(path, index=False)
    market = market_of(bars)
    monkeypatch.setenv("ALPACA_API_KEY", "key-id")
    monkeypatch.setenv("ALPACA_SECRET_KEY", "secret")
    monkeypatch.setenv("ALPACA_BASE_URL", alpaca_server.url)
    text = export(SID, SPEC.to_json(), "alpaca", symbols=list(market.symbols)).text
    script = tmp_path / "alpaca_orders.py"
    script.write_text(text)
    return load_generated(text), path, market, alpaca_server, script


def engine_weights(market, allocation):
    state, held = generate_state(SPEC, market)
    alive = np.isfinite(market.close[-1])
    w = np.where(state[-1] & alive, held[-1], 0.0) * allocation / alive.sum()
    return dict(zip(market.symbols, w))


def _project_orders(orders):
    return [Order("v", o["symbol"], o["side"], o["qty"], o["reference_price"], "s") for o in orders]


def test_targets_follow_the_engine_and_orders_pass_the_same_safeguards(setup):
    module, path, market, alpaca, _ = setup
    flat = [s for s, w in engine_weights(market, 1.0).items() if w == 0 and np.isfinite(market.close[-1][market.symbols.index(s)])]
    assert flat and any(engine_weights(market, 1.0).values()), "the spec must be long somewhere and flat somewhere"
    alpaca.positions[flat[0]] = (40, 40 * 50.0)  # held but not wanted: the script must sell it
    decision = module.run(str(path), allocation=1.0, send=False)
    assert decision["weights"] == pytest.approx(engine_weights(market, 1.0), abs=1e-12)
    prices = {s: float(p) for s, p in zip(market.symbols, market.close[-1]) if math.isfinite(p)}
    held = {flat[0]: 40}
    equity = alpaca.cash + 40 * prices[flat[0]]
    planned = decision["accepted"] + decision["rejected"]
    for o in planned:
        delta = math.trunc(decision["weights"].get(o["symbol"], 0.0) * equity / prices[o["symbol"]]) - held.get(o["symbol"], 0)
        assert (o["side"], o["qty"]) == ("buy" if delta > 0 else "sell", abs(delta))
    assert any(o["symbol"] == flat[0] and o["side"] == "sell" for o in decision["accepted"])
    assert decision["rejected"] and all("max_position_weight" in o["reason"] for o in decision["rejected"])
    returns = pd.DataFrame(market.close, index=market.dates, columns=list(market.symbols)).pct_change(fill_method=None)
    ours = check_orders(_project_orders(planned), AccountState(alpaca.cash, held), prices, Limits(), returns=returns)
    assert sorted((o.symbol, o.side, o.qty) for o in ours.accepted) == sorted(
        (o["symbol"], o["side"], o["qty"]) for o in decision["accepted"])
    assert not [r for r in alpaca.requests if r["method"] == "POST"]  # no --submit, nothing sent


def test_submits_market_on_open_orders_once(setup):
    module, path, market, alpaca, _ = setup
    first = module.run(str(path), allocation=0.3, send=True)
    assert first["accepted"] and not first["rejected"]
    posts = [r["body"] for r in alpaca.requests if r["method"] == "POST"]
    assert sorted((b["symbol"], b["side"], int(b["qty"])) for b in posts) == sorted(
        (o["symbol"], o["side"], o["qty"]) for o in first["accepted"])
    assert all(b["time_in_force"] == "opg" and b["client_order_id"].startswith("atc-") for b in posts)
    assert {r["key"] for r in alpaca.requests} == {"key-id"}
    again = module.run(str(path), allocation=0.3, send=True)  # same session, same ids: Alpaca refuses duplicates
    assert [s["status"].startswith("not sent") for s in again["submitted"]] == [True] * len(posts)
    assert len(alpaca.orders) == len(posts)


def test_the_live_endpoint_and_missing_keys_are_refused(setup):
    _, path, _, alpaca, script = setup
    env = {**os.environ, "ALPACA_BASE_URL": "https://api.alpaca.markets", "PYTHONPATH": ""}
    out = subprocess.run([sys.executable, str(script), str(path), "--submit"], capture_output=True, text=True, env=env)
    assert out.returncode != 0 and "live endpoint" in out.stderr
    env = {k: v for k, v in env.items() if k != "ALPACA_SECRET_KEY"}
    out = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True, env=env)
    assert out.returncode != 0 and "ALPACA_SECRET_KEY" in out.stderr
    assert not alpaca.requests
