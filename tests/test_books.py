"""Book families (cross-sectional ranks, pairs) against a plain Python event loop, and causality.

The event loop shares no code with the engine: its own returns, regression, ranking, cost and
borrow arithmetic and bookkeeping, one session at a time, in plain Python.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from alphatwin_pipelines.backtest import CostModel
from alphatwin_pipelines.backtest.book import simulate_book
from alphatwin_pipelines.strategies import MAX_LEVEL, MarketArrays, StrategySpec
from alphatwin_pipelines.strategies.books import generate_book
from alphatwin_pipelines.strategies.ranking import rank_targets

CASH = 100_000.0
COSTS = CostModel(fees_bps=5.0, slippage_bps=5.0, impact_k_bps=100.0, adv_window=20, borrow_bps=300.0)


def book_market(seed: int, T: int = 260, N: int = 8) -> MarketArrays:
    rng = np.random.default_rng(seed)
    close = 30.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, size=(T, N)), axis=0))
    close[:, 1] = close[:, 0] * np.exp(0.05 * np.sin(np.arange(T) / 6.0) + rng.normal(0, 0.01, T))  # a pair
    open_ = close * np.exp(rng.normal(0, 0.006, size=(T, N)))
    volume = rng.lognormal(9, 0.5, size=(T, N))  # thin: impact matters
    for arr in (open_, close, volume):
        arr[:40, 3] = np.nan  # listed late
    return MarketArrays(open_, np.fmax(open_, close) * 1.003, np.fmin(open_, close) * 0.997, close, volume,
                        pd.bdate_range("2019-01-01", periods=T), tuple(f"B{i}" for i in range(N)))


# ------------------------------------------------------------------ the independent event loop


def _own(values):
    return [(t, v) for t, v in enumerate(values) if v == v]


def adv_at(m, t, i, window=20):
    bars = [(m.volume[s, i] * m.close[s, i]) for s in range(t + 1) if m.close[s, i] == m.close[s, i]]
    return sum(bars[-window:]) / window if len(bars) >= window else float("nan")


def slip(order_value, adv):
    part = min(order_value / adv, 1.0) if adv == adv and adv > 0 else 1.0
    return (COSTS.slippage_bps + COSTS.impact_k_bps * math.sqrt(part)) / 1e4


def trade_loop(m: MarketArrays, decide):
    """``decide(t, state) -> {symbol: target weight}`` at the close of t; fills at the next open."""
    T, N = m.shape
    cash, shares, pending, last = CASH, [0.0] * N, {}, [0.0] * N
    fills = {}  # symbol -> fill price of the last order (for the pairs' stops)
    for t in range(T):
        if pending:
            equity = cash + sum(shares[i] * (m.open[t, i] if m.open[t, i] == m.open[t, i] else last[i])
                                for i in range(N))
            for i in sorted(pending):
                o = m.open[t, i]
                if not (o == o and o > 0):
                    continue
                q = pending.pop(i) * equity / o - shares[i]
                if q != 0:
                    price = o * (1 + math.copysign(1, q) * slip(abs(q) * o, adv_at(m, t - 1, i)))
                    cash -= q * price + abs(q) * price * COSTS.fees_bps / 1e4
                    shares[i] += q
                fills[i] = (t, o)
        for i in range(N):
            if m.close[t, i] == m.close[t, i]:
                last[i] = m.close[t, i]
        cash -= COSTS.borrow_bps / 1e4 / 252 * sum(-shares[i] * last[i] for i in range(N) if shares[i] < 0)
        pending.update(decide(t, fills))
    return (cash + sum(shares[i] * last[i] for i in range(N))) / CASH - 1


def xs_loop(m: MarketArrays, lookback, skip, top_k, mode, rebalance, sign=1.0):
    own = [_own(m.close[:, i]) for i in range(m.shape[1])]

    def score(t, i):
        bars = [v for s, v in own[i] if s <= t]
        if len(bars) <= lookback:
            return None
        return sign * (bars[-1 - skip] / bars[-1 - lookback] - 1)
    return rank_loop(m, score, top_k, mode, rebalance)


def rank_loop(m: MarketArrays, score, top_k, mode, rebalance):
    """Trade the ranking of ``score(t, i)`` (None: not rankable) every ``rebalance`` sessions."""
    def decide(t, _fills):
        if t % rebalance:
            return {}
        ranked = sorted((i for i in range(m.shape[1]) if score(t, i) is not None and m.close[t, i] == m.close[t, i]),
                        key=lambda i: (-score(t, i), i))
        target = {i: 0.0 for i in range(m.shape[1])}
        k = min(top_k, len(ranked) if mode == "long_only" else len(ranked) // 2)
        for i in ranked[:k]:
            target[i] = (1.0 if mode == "long_only" else 0.5) / k
        if mode == "long_short" and k:
            for i in ranked[-k:]:
                target[i] = -0.5 / k
        return target
    return trade_loop(m, decide)


def pairs_loop(m: MarketArrays, pairs, window, entry_z, exit_z, hold_limit, pair_stop):
    idx = {s: i for i, s in enumerate(m.symbols)}
    legs = [(idx[a], idx[b]) for a, b in pairs]
    state = [{"raw": 0.0, "pos": 0.0, "blocked": False, "ratio": None, "opened": -1, "age": 0} for _ in legs]

    def zscore(t, a, b):
        rows = [s for s in range(t + 1) if all(m.close[s, j] == m.close[s, j] for j in (a, b))]
        if len(rows) < window or rows[-1] != t:
            return None, None
        ys = [math.log(m.close[s, a]) for s in rows[-window:]]
        xs = [math.log(m.close[s, b]) for s in rows[-window:]]
        mx, my = sum(xs) / window, sum(ys) / window
        var = sum((x - mx) ** 2 for x in xs)
        beta = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var
        spread = [(y - my) - beta * (x - mx) for x, y in zip(xs, ys)]
        std = math.sqrt(sum(s * s for s in spread) / window)
        return (beta, spread[-1] / std) if beta > 0 and std > 1e-12 else (None, None)

    def decide(t, fills):
        out = {}
        for k, (a, b) in enumerate(legs):
            s = state[k]
            beta, z = zscore(t, a, b)
            raw = s["raw"]
            if z is not None:
                raw = -1.0 if z > entry_z else 1.0 if z < -entry_z else 0.0 if abs(z) < exit_z else raw
            stop = False
            if s["pos"] and all(j in fills and fills[j][0] > s["opened"] for j in (a, b)):
                ra, rb = s["ratio"]
                r = math.copysign(1, s["pos"]) * (ra * (m.close[t, a] / fills[a][1] - 1)
                                                  + rb * (m.close[t, b] / fills[b][1] - 1)) / (abs(ra) + abs(rb))
                s["age"] += 1
                stop = r <= -pair_stop or s["age"] >= hold_limit
            if stop:
                s["blocked"] = True
            if raw != s["raw"]:
                s["blocked"] = False
            s["raw"] = raw
            want = 0.0 if s["blocked"] else raw / len(legs)
            if want and math.copysign(1, want) != math.copysign(1, s["pos"] or -want):
                if beta is None:
                    want = 0.0
                else:
                    s["ratio"], s["opened"], s["age"] = (1 / (1 + beta), -beta / (1 + beta)), t, 0
            if want != s["pos"]:
                s["pos"] = want
                for j in (a, b):
                    out[j] = sum(st_["pos"] * st_["ratio"][n] for st_, (x, y) in zip(state, legs)
                                 for n, leg in enumerate((x, y)) if leg == j and st_["ratio"] is not None)
        return out
    return trade_loop(m, decide)


# ------------------------------------------------------------------ agreement with the engine


@pytest.mark.parametrize("family,params", [
    ("xs_momentum", {"lookback": 60, "skip": 5, "top_k": 2, "mode": "long_short", "rebalance": 10}),
    ("xs_momentum", {"lookback": 40, "skip": 0, "top_k": 3, "mode": "long_only", "rebalance": 21}),
    ("xs_reversal", {"lookback": 5, "top_k": 2, "mode": "long_short", "rebalance": 5}),
])
def test_cross_sectional_books_match_the_event_loop(family, params):
    m = book_market(1)
    result = simulate_book(generate_book(StrategySpec(family, params, 0), m), m, COSTS, CASH)
    sign = -1.0 if family == "xs_reversal" else 1.0
    expected = xs_loop(m, params["lookback"], params.get("skip", 0), params["top_k"], params["mode"],
                       params["rebalance"], sign)
    assert len(result.orders) > 20 and result.borrow_paid > (0 if params["mode"] == "long_short" else -1)
    assert abs(result.total_return - expected) <= 1e-6, (result.total_return, expected)


def test_pairs_book_matches_the_event_loop_with_its_stops():
    m = book_market(2)
    pairs = (("B0", "B1"), ("B2", "B3"))
    params = {"z_window": 30, "entry_z": 1.5, "exit_z": 0.3, "hold_limit": 12, "pair_stop": 0.02}
    result = simulate_book(generate_book(StrategySpec("pairs", params, 0, pairs), m), m, COSTS, CASH)
    expected = pairs_loop(m, pairs, 30, 1.5, 0.3, 12, 0.02)
    assert len(result.orders) > 10 and (result.weights < 0).any().any()
    assert abs(result.total_return - expected) <= 1e-6, (result.total_return, expected)


def test_dollar_neutral_book_has_zero_net_target_and_unit_gross():
    m = book_market(3)
    w = rank_targets(np.asarray(m.close), top_k=3, mode="long_short", rebalance=7)
    rows = np.isfinite(w).all(axis=1)
    assert rows.sum() == len(range(0, m.shape[0], 7))
    np.testing.assert_allclose(w[rows].sum(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.abs(w[rows]).sum(axis=1), 1.0)
    result = simulate_book(generate_book(StrategySpec("xs_momentum", {"top_k": 3, "lookback": 40, "skip": 0}, 0), m),
                           m, CostModel.zero())
    assert result.gross.max() > 0.9 and result.net.abs().max() < 0.2 and result.borrow_paid == 0


# ------------------------------------------------------------------ no look-ahead


BOOK_SPECS = [StrategySpec("xs_momentum", {"lookback": 40, "skip": 5, "rebalance": 5}, lvl) for lvl in (0, 5, MAX_LEVEL)]
BOOK_SPECS += [StrategySpec("xs_reversal", {}, MAX_LEVEL)]
BOOK_SPECS += [StrategySpec("pairs", {"z_window": 25, "entry_z": 1.2}, lvl, (("B0", "B1"), ("B4", "B5")))
               for lvl in (0, 9)]


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**16), cut=st.integers(150, 250), scale=st.floats(0.2, 5.0))
def test_book_targets_never_look_ahead(seed, cut, scale):
    """Rewriting every bar after ``cut`` never changes a target decided at or before it."""
    m = book_market(7)
    rng = np.random.default_rng(seed)
    fields = {f: np.array(getattr(m, f)) for f in ("open", "high", "low", "close", "volume")}
    for f in fields:
        fields[f][cut + 1:] *= rng.uniform(0.5, 1.5) * scale
    other = MarketArrays(**fields, dates=m.dates, symbols=m.symbols)
    for spec in BOOK_SPECS:
        a, b = generate_book(spec, m).weights[: cut + 1], generate_book(spec, other).weights[: cut + 1]
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=spec.to_json())
        np.testing.assert_allclose(np.nan_to_num(a), np.nan_to_num(b), rtol=0, atol=1e-12, err_msg=spec.to_json())


def test_cards_state_book_rules_shorts_and_borrow():
    from alphatwin_pipelines.cards.rules import rule_sections

    costs = {"fees_bps": 5.0, "slippage_bps": 5.0, "impact_k_bps": 100.0, "adv_window": 20, "borrow_bps": 80.0}
    xs = rule_sections(StrategySpec("xs_momentum", {"top_k": 4, "rebalance": 10}, 3), costs, ["A", "B"])
    assert "Every 10 sessions" in xs["entry"][0] and "short the bottom 4" in xs["entry"][0]
    assert any("80 bp a year" in line for line in xs["costs"]) and "long or short" in xs["stops"][0]
    pairs = rule_sections(StrategySpec("pairs", {}, 0, (("A", "B"),)), costs, ["A", "B"])
    assert "pairs A/B" in pairs["universe"][0] and "after 20 sessions" in pairs["exit"][0]


@pytest.mark.parametrize("family", ["xs_momentum", "xs_reversal", "pairs", "ml_rank"])
def test_book_specs_search_spaces_and_json(family):
    from alphatwin_pipelines.strategies import sample_params, search_space, suggest_params

    class Trial:  # draws the low end of every range (an Optuna-like trial)
        def suggest_int(self, name, low, high):
            return low

        def suggest_float(self, name, low, high):
            return low

        def suggest_categorical(self, name, choices):
            return choices[0]

    pairs = (("B0", "B1"),) if family == "pairs" else ()
    for level in (0, 5, MAX_LEVEL):
        for params in (suggest_params(Trial(), family, level), *sample_params(family, level, 10, seed=level)):
            spec = StrategySpec(family, params, level, pairs)
            again = StrategySpec.from_json(spec.to_json())
            assert again == spec and again.spec_hash() == spec.spec_hash() and again.pairs == pairs
        assert set(search_space(family, level)) == set(StrategySpec(family, {}, level, pairs).params)
    if family == "pairs":
        with pytest.raises(ValueError, match="needs at least one"):
            StrategySpec("pairs")
        with pytest.raises(ValueError, match="exit_z"):
            StrategySpec("pairs", {"entry_z": 1.0, "exit_z": 1.0}, 0, pairs)
    else:
        with pytest.raises(ValueError, match="needs at least one"):
            StrategySpec(family, {}, 0, (("B0", "B1"),))


def test_momentum_score_of_a_symbol_with_fewer_bars_than_the_skip():
    """A walk-forward window cut just after a late listing: that symbol has a bar or a few, no score."""
    from alphatwin_pipelines.strategies import Indicators
    from alphatwin_pipelines.strategies.books import momentum_score

    market = book_market(4, T=120, N=4)
    close = np.array(market.close)
    close[:-3, 0] = np.nan  # listed three sessions before the end
    late = MarketArrays(open=close, high=close, low=close, close=close, volume=market.volume, dates=market.dates,
                        symbols=market.symbols)
    score = momentum_score(Indicators(late), lookback=30, skip=5)
    assert np.isnan(score[:, 0]).all()
    full = momentum_score(Indicators(market), lookback=30, skip=5)
    np.testing.assert_array_equal(score[:, 1:], full[:, 1:])  # the other symbols are untouched
    assert np.isfinite(full[-1]).all() and full[-1, 1] == pytest.approx(close[-6, 1] / close[-31, 1] - 1, rel=1e-12)
