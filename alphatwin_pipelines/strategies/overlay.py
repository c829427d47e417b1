"""The complexity ladder on a book: filters, sizing, stops and exits on *units* of target weight.

A book family (cross-sectional ranks, pairs) hands over units: a unit is one symbol (ranks) or
one pair (two legs), with a raw signed target ``raw[t, m]`` (fraction of equity, decided at the
close of t) and leg ratios ``ratio[t, m, l]`` (the leg's weight per unit of target; NaN = the
unit cannot be opened that day). The overlay applies the spec's level features, row by row:

* a unit *opens* (0 -> non-zero, or a sign flip) only where its gates pass: trend_filter (each
  long leg closes above, each short leg below, SMA(trend_window)), vol_filter (every leg),
  breadth_regime / index_regime (single-leg long units only; shorts and pairs are neutral to
  the market's direction); a blocked opening is retried on later closes while the raw target
  stands. Leg ratios and the vol_sizing scale ``min(1, target_vol / max leg vol)`` are frozen
  at the opening for the trade.
* stops on the position's return since its fill (the first open after the opening close, every
  leg): ``r = sum(legs' signed ratio * (close / fill - 1)) / sum(|ratio|)``. stop_loss
  ``r <= -stop_loss``; take_profit ``r >= take_profit``; trailing_stop ``1 + r <= peak(1 + r) *
  (1 - trail_stop)``; time_stop after ``max_hold`` closes (the fill close counts 1); the family
  may add its own loss and time stops (pairs' ``pair_stop``, ``hold_limit``). trend_exit: a leg
  closes on the wrong side of its SMA(trend_window); regime_exit: the index regime turns off
  (single-leg long units). A stopped or exited unit stays flat until its raw target changes.

Output: symbol target weights (the sum of the units' legs) on the rows where some unit touching
the symbol was decided (a raw decision row, or its weight changed), NaN elsewhere.
Everything at t uses rows <= t only.
"""

from __future__ import annotations

import functools

import numpy as np

from alphatwin_pipelines.strategies import filters as flt
from alphatwin_pipelines.strategies.families import Indicators, ffill


def _gates(spec, ind: Indicators):
    """Symbol-level gate arrays of the spec's features (None when the feature is off)."""
    p, feats, m = spec.params, set(spec.features), ind.market
    g = {"up": None, "down": None, "vol": None, "regime": None, "size": None, "regime_off": None}
    with np.errstate(invalid="ignore"):
        if "trend_filter" in feats or "trend_exit" in feats:
            sma = ind.sma(p["trend_window"])
            g["up"], g["down"] = m.close > sma, m.close < sma
        if "vol_filter" in feats:
            g["vol"] = flt.vol_ok(ind, p["vol_window"], p["vol_pct"])
        regime = np.ones((m.shape[0], 1), dtype=bool)
        if "breadth_regime" in feats:
            regime = regime & flt.breadth_ok(ind, p["breadth_window"], p["breadth_min"])
        if "index_regime" in feats:
            regime = regime & flt.index_ok(ind, p["index_window"])
        g["regime"] = regime[:, 0]
        if "regime_exit" in feats:
            g["regime_off"] = ~flt.index_ok(ind, p["index_window"])[:, 0]
        if "vol_sizing" in feats:
            g["size"] = flt.vol_target_size(ind, p["target_vol"], p["sizing_window"])
    return g


def apply_overlay(spec, ind: Indicators, raw: np.ndarray, ratio: np.ndarray, legs: np.ndarray,
                  decide: np.ndarray, loss_stop: float = np.nan, time_stop: int = 0) -> np.ndarray:
    """Symbol target weights (T, N), NaN = no decision (module docstring).

    ``raw`` (T, M) signed unit targets; ``ratio`` (T, M, L) leg ratios; ``legs`` (M, L) market
    columns; ``decide`` (T, M) rows where the raw target was (re)decided (rebalance days).
    """
    p, feats, market = spec.params, set(spec.features), ind.market
    T, N = market.shape
    g = _gates(spec, ind)
    sl = p["stop_loss"] if "stop_loss" in feats else np.nan
    losses = [x for x in (sl, loss_stop) if x == x]
    hold = [h for h in (int(p["max_hold"]) if "time_stop" in feats else 0, int(time_stop)) if h > 0]
    ones = np.ones((T, N), dtype=np.bool_)
    return _kernel()(
        np.ascontiguousarray(raw, dtype=np.float64), np.ascontiguousarray(ratio, dtype=np.float64),
        np.ascontiguousarray(legs, dtype=np.int64), np.ascontiguousarray(decide, dtype=np.bool_),
        market.open, ffill(market.close), market.close,
        ones if g["up"] is None else np.ascontiguousarray(g["up"]),
        ones if g["down"] is None else np.ascontiguousarray(g["down"]),
        ones if g["vol"] is None else np.ascontiguousarray(g["vol"], dtype=np.bool_),
        np.ascontiguousarray(g["regime"], dtype=np.bool_),
        np.zeros(T, dtype=np.bool_) if g["regime_off"] is None else np.ascontiguousarray(g["regime_off"]),
        np.ones((T, N)) if g["size"] is None else np.ascontiguousarray(g["size"], dtype=np.float64),
        min(losses) if losses else np.nan, p["take_profit"] if "take_profit" in feats else np.nan,
        p["trail_stop"] if "trailing_stop" in feats else np.nan, min(hold) if hold else 0,
        "trend_filter" in feats, "trend_exit" in feats)


@functools.lru_cache(maxsize=1)
def _kernel():
    import numba  # lazy: importing the strategy library stays light

    return numba.njit(cache=True)(_overlay_loop)


def _overlay_loop(raw, ratio, legs, decide, opens, mark, close, up, down, vol, regime, regime_off, size,
                  loss, tp, tr, max_hold, trend_filter, trend_exit):
    """The row loop of :func:`apply_overlay` (plain loops: compiled with numba)."""
    T, M = raw.shape
    L = legs.shape[1]
    N = opens.shape[1]
    out = np.full((T, N), np.nan)
    cur = np.zeros(M)
    lr = np.zeros((M, L))
    scale = np.ones(M)
    ref = np.full((M, L), np.nan)
    peak = np.ones(M)
    age = np.zeros(M, dtype=np.int64)
    opened = np.full(M, -1, dtype=np.int64)
    blocked = np.zeros(M, dtype=np.bool_)
    prev_raw = np.zeros(M)
    target = np.zeros(N)
    touched = np.zeros(N, dtype=np.bool_)
    for t in range(T):
        any_decided = False
        touched[:] = False
        for m in range(M):
            s = np.sign(cur[m])
            held = s != 0
            stop = False
            if held:
                known = True
                gross = 0.0
                acc = 0.0
                for l in range(L):
                    j = legs[m, l]
                    if np.isnan(ref[m, l]) and opened[m] < t and np.isfinite(opens[t, j]):
                        ref[m, l] = opens[t, j]
                    if np.isnan(ref[m, l]):
                        known = False
                    else:
                        acc += lr[m, l] * (mark[t, j] / ref[m, l] - 1.0)
                    gross += abs(lr[m, l])
                if known:
                    ret = s * acc / max(gross, 1e-12)
                    if np.isfinite(close[t, legs[m, 0]]):
                        age[m] += 1
                    peak[m] = max(peak[m], 1.0 + ret)
                    if loss == loss and ret <= -loss:
                        stop = True
                    if tp == tp and ret >= tp:
                        stop = True
                    if tr == tr and 1.0 + ret <= peak[m] * (1.0 - tr):
                        stop = True
                    if max_hold > 0 and age[m] >= max_hold:
                        stop = True
                if trend_exit:
                    for l in range(L):
                        d = s * np.sign(lr[m, l])
                        j = legs[m, l]
                        if (d > 0 and not up[t, j]) or (d < 0 and not down[t, j]):
                            stop = True
                if L == 1 and s > 0 and regime_off[t]:
                    stop = True
            if stop:
                blocked[m] = True
            if raw[t, m] != prev_raw[m]:
                blocked[m] = False
            prev_raw[m] = raw[t, m]
            desired = 0.0 if blocked[m] else raw[t, m]
            if desired != 0 and np.sign(desired) != s:  # an opening: the gates decide
                ok = True
                smallest = np.inf
                for l in range(L):
                    r = ratio[t, m, l]
                    j = legs[m, l]
                    if not np.isfinite(r):
                        ok = False
                        continue
                    d = np.sign(desired) * np.sign(r)
                    if trend_filter and ((d > 0 and not up[t, j]) or (d < 0 and not down[t, j])):
                        ok = False
                    if not vol[t, j]:
                        ok = False
                    smallest = min(smallest, size[t, j])
                if L == 1 and desired > 0 and not regime[t]:
                    ok = False
                if not smallest > 0:
                    ok = False
                if ok:
                    for l in range(L):
                        lr[m, l] = ratio[t, m, l]
                        ref[m, l] = np.nan
                    scale[m] = smallest
                    peak[m] = 1.0
                    age[m] = 0
                    opened[m] = t
                else:
                    desired = 0.0
            weight = desired * scale[m]
            if weight == 0 and cur[m] != 0:
                for l in range(L):
                    ref[m, l] = np.nan
                peak[m] = 1.0
                age[m] = 0
            if decide[t, m] or weight != cur[m]:
                any_decided = True
                for l in range(L):
                    touched[legs[m, l]] = True
            cur[m] = weight
        if any_decided:
            target[:] = 0.0
            for m in range(M):
                for l in range(L):
                    target[legs[m, l]] += cur[m] * lr[m, l]
            for j in range(N):
                if touched[j]:
                    out[t, j] = target[j]
    return out
