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
    M, L = legs.shape
    g = _gates(spec, ind)
    mark = ffill(market.close)
    opens = market.open
    sl = p.get("stop_loss", np.nan) if "stop_loss" in feats else np.nan
    tp = p.get("take_profit", np.nan) if "take_profit" in feats else np.nan
    tr = p.get("trail_stop", np.nan) if "trailing_stop" in feats else np.nan
    hold = [h for h in (int(p["max_hold"]) if "time_stop" in feats else 0, int(time_stop)) if h > 0]
    max_hold = min(hold) if hold else 0
    losses = [x for x in (sl, loss_stop) if x == x]
    loss = min(losses) if losses else np.nan
    single_long_ok = L == 1
    out = np.full((T, N), np.nan)
    cur = np.zeros(M)  # signed unit weight held after the previous close
    lr = np.zeros((M, L))  # frozen leg ratios
    scale = np.ones(M)
    ref = np.full((M, L), np.nan)
    peak = np.ones(M)
    age = np.zeros(M, dtype=np.int64)
    opened = np.full(M, -1, dtype=np.int64)
    blocked = np.zeros(M, dtype=bool)
    prev_raw = np.zeros(M)
    for t in range(T):
        held = cur != 0
        o, c = opens[t, legs], mark[t, legs]  # (M, L)
        with np.errstate(invalid="ignore", divide="ignore"):
            fill = held[:, None] & np.isnan(ref) & np.isfinite(o) & (opened[:, None] < t)
            ref = np.where(fill, o, ref)
            known = held & np.isfinite(ref).all(axis=1)
            ret = np.sign(cur) * np.nansum(lr * (c / ref - 1.0), axis=1) / np.maximum(np.abs(lr).sum(axis=1), 1e-12)
            ret = np.where(known, ret, 0.0)
            age = age + (known & np.isfinite(market.close[t, legs[:, 0]]))
            peak = np.where(known, np.maximum(peak, 1.0 + ret), peak)
            stop = np.zeros(M, dtype=bool)
            if loss == loss:
                stop |= known & (ret <= -loss)
            if tp == tp:
                stop |= known & (ret >= tp)
            if tr == tr:
                stop |= known & (1.0 + ret <= peak * (1.0 - tr))
            if max_hold:
                stop |= known & (age >= max_hold)
            direction = np.sign(cur)[:, None] * np.sign(lr)  # +1 long leg, -1 short leg
            if "trend_exit" in feats:
                wrong = np.where(direction > 0, ~g["up"][t, legs], np.where(direction < 0, ~g["down"][t, legs], False))
                stop |= held & wrong.any(axis=1)
            if g["regime_off"] is not None and single_long_ok:
                stop |= held & (cur > 0) & bool(g["regime_off"][t])
        blocked |= stop
        changed = raw[t] != prev_raw
        blocked &= ~changed
        prev_raw = raw[t].copy()
        desired = np.where(blocked, 0.0, raw[t])
        opening = (desired != 0) & (np.sign(desired) != np.sign(cur))
        if opening.any():
            r_t = ratio[t]
            ok = opening & np.isfinite(r_t).all(axis=1)
            leg_dir = np.sign(desired)[:, None] * np.sign(np.nan_to_num(r_t))
            if g["up"] is not None and "trend_filter" in feats:
                ok &= np.where(leg_dir > 0, g["up"][t, legs], np.where(leg_dir < 0, g["down"][t, legs], True)).all(axis=1)
            if g["vol"] is not None:
                ok &= g["vol"][t, legs].all(axis=1)
            if single_long_ok:
                ok &= (desired < 0) | bool(g["regime"][t])
            size = np.ones(M)
            if g["size"] is not None:
                size = g["size"][t, legs].min(axis=1)  # the most volatile leg sets the scale
                ok &= size > 0
            desired = np.where(opening & ~ok, 0.0, desired)
            new = opening & ok
            lr = np.where(new[:, None], np.nan_to_num(r_t), lr)
            scale = np.where(new, size, scale)
            ref = np.where(new[:, None], np.nan, ref)
            peak, age, opened = np.where(new, 1.0, peak), np.where(new, 0, age), np.where(new, t, opened)
        weight = desired * scale
        decided = decide[t] | (weight != cur)
        closed = (weight == 0) & (cur != 0)
        ref = np.where(closed[:, None], np.nan, ref)
        peak, age = np.where(closed, 1.0, peak), np.where(closed, 0, age)
        cur = weight
        if decided.any():
            target = np.zeros(N)
            np.add.at(target, legs.ravel(), (cur[:, None] * lr).ravel())
            touched = np.zeros(N, dtype=bool)
            touched[legs[decided].ravel()] = True
            out[t, touched] = target[touched]
    return out
