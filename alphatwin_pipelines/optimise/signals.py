"""A strategy's position state in one compiled pass: family rule, filters, exits, sizing and stops.

``strategies.generate_state`` builds the same ``(state, held)`` with whole-array NumPy steps (the
family rule, ``previous_valid`` for the cross rules, one boolean array per filter, then the state
machine): about a dozen (T, N) temporaries per trial. In a study the indicators are already in the
shared :class:`~alphatwin_pipelines.strategies.Indicators` cache, so those temporaries were most of
a trial's cost. :func:`state_nb` reads the cached indicators and decides each cell in one loop, rows
outer and symbols inner, feeding the state machine's own rows (``state_machine.step_row``).

Each family rule is written here in a compiled form (:func:`rule_inputs`), next to its NumPy form
in :mod:`~alphatwin_pipelines.strategies.families`; a test compares the two families x levels
value by value (tests/test_optimise_batched.py), so a rule changed in one place only fails it.

Compiled form of an entry: ``x = a1 - b1`` (``b1`` an array or the constant ``c1``), optionally
``x = minimum(x, a2 - b2)`` (NaN if either is), then ``cross_above`` (x > 0 and the symbol's
previous finite x <= 0), ``cross_below`` (x < 0, previous >= 0), or the plain ``a1 > b1``. An
exit: ``ea < eb``, ``ea > eb`` or ``ea >= eb`` (``eb`` an array or the constant ``ec``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from alphatwin_pipelines.strategies import filters as flt
from alphatwin_pipelines.strategies.families import adx_parts, relative_volume
from alphatwin_pipelines.strategies.state_machine import machine_scratch, step_row

CROSS_ABOVE, CROSS_BELOW, ABOVE = 0, 1, 2
LT, GT, GE = 0, 1, 2
_NO_2D = np.zeros((1, 1))
_NO_1D = np.zeros(1)
_NO_BOOL = np.zeros(1, dtype=np.bool_)


def _rule(ind, family: str, p: dict):
    """``(entry_mode, a1, b1, c1, a2, b2, c2, exit_op, ea, eb, ec)`` of ``family`` (module docstring);
    ``None`` for an unused array, NaN for an unused constant."""
    nan, close = np.nan, ind.market.close
    if family == "ma_cross":
        fast, slow = ind.ma(p["ma_type"], p["fast"]), ind.ma(p["ma_type"], p["slow"])
        return CROSS_ABOVE, fast, slow, nan, None, None, nan, LT, fast, slow, nan
    if family == "rsi_reversion":
        rsi = ind.rsi(p["period"])
        return CROSS_BELOW, rsi, None, float(p["lower"]), None, None, nan, GT, rsi, None, float(p["upper"])
    if family == "bollinger_reversion":
        lower, mid = ind.bb_lower(p["period"], p["n_std"]), ind.sma(p["period"])
        return CROSS_BELOW, close, lower, nan, None, None, nan, GE, close, mid, nan
    if family == "ts_momentum":
        mom = ind.roc(p["lookback"])
        return CROSS_ABOVE, mom, None, float(p["threshold"]), None, None, nan, LT, mom, None, float(-p["threshold"])
    if family == "donchian_breakout":
        return (ABOVE, close, ind.prior_high(p["entry_window"]), nan, None, None, nan, LT, close,
                ind.prior_low(p["exit_window"]), nan)
    if family == "adx_trend":
        adx, plus, minus = adx_parts(ind, p["period"])
        return CROSS_ABOVE, plus, minus, nan, adx, None, float(p["adx_min"]), LT, plus, minus, nan
    if family == "volume_momentum":
        mom = ind.roc(p["lookback"])
        return (CROSS_ABOVE, mom, None, 0.0, relative_volume(ind, p["volume_window"]), None,
                float(p["volume_ratio"]), LT, mom, None, 0.0)
    raise ValueError(f"optimise.signals has no compiled rule for family {family!r}; add one to _rule or leave the "
                     "family out of optimise.objective.KERNEL_FAMILIES (the per-trial path runs it)")


def _arr(a, empty=_NO_2D):
    return empty if a is None else np.ascontiguousarray(a, dtype=empty.dtype)


def rule_inputs(spec, ind) -> tuple:
    """The arguments of :func:`state_nb` after the market's close and open, for ``spec`` (all
    indicators from the shared cache ``ind``)."""
    p, feats = spec.params, set(spec.features)
    mode, a1, b1, c1, a2, b2, c2, op, ea, eb, ec = _rule(ind, spec.family, p)
    trend = ind.sma(p["trend_window"]) if ("trend_filter" in feats or "trend_exit" in feats) else None
    vrank = flt.vol_rank(ind, p["vol_window"]) if "vol_filter" in feats else None
    breadth = flt.breadth(ind, p["breadth_window"]) if "breadth_regime" in feats else None
    regime = "index_regime" in feats or "regime_exit" in feats
    index_ok = flt.index_ok(ind, p["index_window"])[:, 0] if regime else None
    rv = ind.realised_vol(p["sizing_window"]) if "vol_sizing" in feats else None
    flags = np.array(["trend_filter" in feats, vrank is not None, breadth is not None, "index_regime" in feats,
                      "trend_exit" in feats, "regime_exit" in feats, rv is not None], dtype=np.bool_)
    return (mode, _arr(a1), _arr(b1), c1, b1 is not None, a2 is not None, _arr(a2), _arr(b2), c2, b2 is not None,
            op, _arr(ea), _arr(eb), ec, eb is not None, flags, _arr(trend), _arr(vrank), float(p.get("vol_pct", 0.0)),
            _arr(breadth, _NO_1D), float(p.get("breadth_min", 0.0)), _arr(index_ok, _NO_BOOL), _arr(rv),
            float(p.get("target_vol", 0.0)), _stop(p, feats, "stop_loss", "stop_loss"),
            _stop(p, feats, "take_profit", "take_profit"), _stop(p, feats, "trailing_stop", "trail_stop"),
            int(p["max_hold"]) if "time_stop" in feats else 0)


def compiled_state(spec, ind) -> tuple[np.ndarray, np.ndarray]:
    """``strategies.generate_state(spec, ind.market, ind)`` through :func:`state_nb`: ``(state, held)``."""
    market = ind.market
    state, held = np.empty(market.shape, dtype=np.bool_), np.empty(market.shape)
    state_nb(np.ascontiguousarray(market.close), np.ascontiguousarray(market.open), *rule_inputs(spec, ind), state,
             held)
    return state, held


def _stop(p: dict, feats: set, feature: str, name: str) -> float:
    return float(p[name]) if feature in feats else np.nan


@njit(cache=True, nogil=True)
def _minus(a, b, const, use_b, out):
    """``out = a - b`` (rows), or ``a - const`` when ``use_b`` is False."""
    if use_b:
        for k in range(a.shape[0]):
            out[k] = a[k] - b[k]
    else:
        for k in range(a.shape[0]):
            out[k] = a[k] - const


@njit(cache=True, nogil=True, error_model="numpy")
def state_nb(close, open_, mode, a1, b1, c1, use_b1, two, a2, b2, c2, use_b2, op, ea, eb, ec, use_eb, flags, trend,
             vrank, vol_pct, breadth, breadth_min, index_ok, rv, target_vol, stop_loss, take_profit, trail_stop,
             max_hold, state, held):
    """Fill ``state``/``held`` (T, N) as ``generate_state`` does (arguments: :func:`rule_inputs`). Each
    row's entries, exits and sizes go to row buffers, then through the state machine's
    ``step_row``; every expression is written out in the loop (a helper call per cell would pay
    reference counts on its array arguments)."""
    T, K = close.shape
    trend_filter, vol_filter, breadth_regime, index_regime = flags[0], flags[1], flags[2], flags[3]
    trend_exit, regime_exit, vol_sizing = flags[4], flags[5], flags[6]
    last = np.full(K, np.nan)  # each symbol's previous finite x (previous_valid)
    x, y = np.empty(K), np.empty(K)
    en_row, ex_row, sz_row = np.empty(K, dtype=np.bool_), np.empty(K, dtype=np.bool_), np.ones(K)
    scratch = machine_scratch(K)
    for t in range(T):  # one branch-free loop per rule part: each vectorises (a test per cell did not)
        c = close[t]
        if mode == ABOVE:
            for k in range(K):
                en_row[k] = a1[t, k] > (b1[t, k] if use_b1 else c1)
        else:
            _minus(a1[t], b1[t] if use_b1 else b1[0], c1, use_b1, x)
            if two:
                _minus(a2[t], b2[t] if use_b2 else b2[0], c2, use_b2, y)
                for k in range(K):
                    x[k] = np.nan if (x[k] != x[k] or y[k] != y[k]) else min(x[k], y[k])
            if mode == CROSS_ABOVE:
                for k in range(K):
                    en_row[k] = (x[k] > 0) & (last[k] <= 0)
            else:
                for k in range(K):
                    en_row[k] = (x[k] < 0) & (last[k] >= 0)
            for k in range(K):
                last[k] = x[k] if np.isfinite(x[k]) else last[k]
        e, f = ea[t], eb[t] if use_eb else eb[0]
        if op == LT:
            for k in range(K):
                ex_row[k] = e[k] < (f[k] if use_eb else ec)
        elif op == GT:
            for k in range(K):
                ex_row[k] = e[k] > (f[k] if use_eb else ec)
        else:
            for k in range(K):
                ex_row[k] = e[k] >= (f[k] if use_eb else ec)
        if trend_filter:
            for k in range(K):
                en_row[k] = en_row[k] and c[k] > trend[t, k]
        if vol_filter:
            for k in range(K):
                en_row[k] = en_row[k] and vrank[t, k] <= vol_pct
        if (breadth_regime and not breadth[t] >= breadth_min) or (index_regime and not index_ok[t]):
            en_row[:] = False
        if trend_exit:
            for k in range(K):
                ex_row[k] = ex_row[k] or c[k] < trend[t, k]
        if regime_exit and not index_ok[t]:
            for k in range(K):
                ex_row[k] = ex_row[k] or np.isfinite(c[k])
        if vol_sizing:
            for k in range(K):
                q = target_vol / rv[t, k]
                sz = np.nan if q != q else min(1.0, q)
                sz_row[k] = sz if (np.isfinite(sz) and sz > 0) else 0.0
        step_row(t, en_row, ex_row, sz_row, open_[t], c, stop_loss, take_profit, trail_stop, max_hold, scratch,
                 state[t], held[t])
