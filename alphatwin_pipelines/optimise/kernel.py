"""The objective's backtest fused into one compiled pass: B strategies x N symbols per call.

:func:`~.objective.portfolio_metrics` simulates with vectorbt (``backtest.simulate``) and then
averages the symbols' returns; for a study that is dozens of (T, N) array passes per trial. This
kernel computes the same numbers in one loop per (strategy, symbol) column, reusing vectorbt's
own order functions (``buy_nb``/``sell_nb``: percent-of-cash buys, sell-everything exits, fees,
slippage), so the fills are vectorbt's to the bit:

1. window: only trades whose entry decision is at or after ``first_row`` count;
2. orders: a decision at the close of t fills at the next bar with a finite, positive open
   (normally t + 1); if every fill row has a price the orders are the engine's sparse plan,
   otherwise decisions wait over missing prices and the latest one wins (``orders.plan_orders``);
3. costs: slippage + square-root impact on the nominal order value against the ADV known at the
   decision close (``CostModel.slippage_fraction``), fees on the traded value;
4. accounts: cash and shares rolled up from the fills (``orders.account``), marked at the
   forward-filled close; daily returns NaN outside each symbol's life (``engine.simulate``);
5. portfolio: each session's mean of the finite symbol returns from ``first_row`` on, summed in
   NumPy's pairwise order so the mean is the same float ``portfolio_returns`` gives.

A test checks every family and level against the vectorbt path value by value.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from vectorbt.portfolio.enums import Direction, ExecuteOrderState
from vectorbt.portfolio.nb import buy_nb, sell_nb

_PW_BLOCK = 128


@njit(cache=True, nogil=True)
def _block(a, lo, n):
    """NumPy's ``pairwise_sum`` of ``a[lo:lo + n]`` for n <= 128 (numpy's loops_utils)."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    stop = n - n % 8
    while i < stop:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True, nogil=True)
def _pairwise(a, lo, n):
    """NumPy's pairwise sum: halves (rounded to a multiple of 8) until blocks of <= 128, summed
    left + right. Iterative: numba's cache reloads a recursive function into a crash."""
    node_lo = np.empty(128, dtype=np.int64)
    node_n = np.empty(128, dtype=np.int64)
    node_done = np.zeros(128, dtype=np.bool_)
    values = np.empty(128)
    top = 0
    nv = 0
    node_lo[0], node_n[0], node_done[0] = lo, n, False
    top = 1
    while top > 0:
        top -= 1
        lo_, n_, done = node_lo[top], node_n[top], node_done[top]
        if n_ <= _PW_BLOCK:
            values[nv] = _block(a, lo_, n_)
            nv += 1
        elif done:
            right = values[nv - 1]
            left = values[nv - 2]
            nv -= 2
            values[nv] = left + right
            nv += 1
        else:
            n2 = n_ // 2
            n2 -= n2 % 8
            node_lo[top], node_n[top], node_done[top] = lo_, n_, True
            node_lo[top + 1], node_n[top + 1], node_done[top + 1] = lo_ + n2, n_ - n2, False
            node_lo[top + 2], node_n[top + 2], node_done[top + 2] = lo_, n2, False
            top += 3
    return values[0]


@njit(cache=True, nogil=True)
def row_sum(a):
    """``a.sum()`` of a contiguous 1-D float64 array, in NumPy's pairwise order."""
    n = a.shape[0]
    if n == 0:
        return 0.0
    return _pairwise(a, 0, n)


@njit(cache=True, nogil=True)
def _slippage(fraction, adv, notional, slippage_bps, impact_k_bps):
    if impact_k_bps == 0:
        return slippage_bps * 1e-4
    value = abs(notional * fraction)
    part = value / adv if (np.isfinite(adv) and adv > 0) else 1.0
    part = min(max(part, 0.0), 1.0)
    return (slippage_bps + impact_k_bps * np.sqrt(part)) * 1e-4


@njit(cache=True, nogil=True)
def _column(state, held, open_, mark, adv, alive_lo, alive_hi, first_row, init_cash, fees, notional, slip_bps,
            impact_k, min_size, out):
    """One (strategy, symbol) account: daily returns into ``out`` (T,), returns the number of buys."""
    T = state.shape[0]
    # 1. the trades opened from first_row on (state2) and their sizes (held2)
    state2 = np.zeros(T, dtype=np.bool_)
    long = False
    for t in range(T):
        if state[t] and not (t > 0 and state[t - 1]):  # an entry decision
            if t >= first_row and held[t] > 0:
                long = True
        elif not state[t] and t > 0 and state[t - 1]:  # an exit decision
            long = False
        state2[t] = long
    # 2. sparse plan valid? (every fill row after a transition has a price)
    sparse = True
    for t in range(T - 1):
        prev = state2[t - 1] if t > 0 else False
        if state2[t] != prev:
            px = open_[t + 1]
            if not (np.isfinite(px) and px > 0):
                sparse = False
                break
    cash = init_cash
    position = 0.0
    debt = 0.0
    free_cash = init_cash
    flow_cash = 0.0
    shares = 0.0
    cur = 0.0  # dense plan: the target of the last tradable row
    buys = 0
    for t in range(T):
        side = 0  # 1 buy, -1 sell
        fraction = 0.0
        if t > 0:
            prev2 = state2[t - 2] if t > 1 else False
            target = held[t - 1] if state2[t - 1] else 0.0
            if sparse:
                if state2[t - 1] and not prev2:
                    side, fraction = 1, target
                elif prev2 and not state2[t - 1]:
                    side, fraction = -1, (held[t - 2] if (t > 1 and state2[t - 2]) else 0.0)
            else:
                px = open_[t]
                if np.isfinite(px) and px > 0:
                    if (target > 0) != (cur > 0):
                        if target > 0:
                            side, fraction = 1, target
                        else:
                            side, fraction = -1, cur
                    cur = target
        if side != 0:
            px = open_[t]
            slip = _slippage(fraction, adv[t], notional, slip_bps, impact_k)
            exec_state = ExecuteOrderState(cash=cash, position=position, debt=debt, free_cash=free_cash)
            if side > 0:
                new_state, res = buy_nb(exec_state, np.inf, px, Direction.LongOnly, fees, 0.0, slip, min_size,
                                        np.inf, np.nan, False, True, fraction)
            else:
                new_state, res = sell_nb(exec_state, np.inf, px, Direction.LongOnly, fees, 0.0, slip, min_size,
                                         np.inf, np.nan, False, True, 1.0)
            if res.status == 0:  # filled
                cash, position, debt, free_cash = new_state.cash, new_state.position, new_state.debt, new_state.free_cash
                if side > 0:
                    shares += res.size
                    flow_cash += -res.size * res.price - res.fees
                    buys += 1
                else:
                    shares += -res.size
                    flow_cash += res.size * res.price - res.fees
        value = (flow_cash + init_cash) + shares * mark[t]
        if t == 0:
            ret = (value - init_cash) / init_cash
        else:
            ret = (value - out[t]) / out[t]  # out[t] holds the previous value until overwritten
        if t + 1 < T:
            out[t + 1] = value
        out[t] = ret if alive_lo <= t <= alive_hi else np.nan
    return buys


@njit(cache=True, nogil=True)
def portfolio_kernel(states, helds, open_, mark, adv, alive_lo, alive_hi, first_row, init_cash, fees, notional,
                     slip_bps, impact_k, min_size, port, trades):
    """For each strategy b: ``port[b]`` = the daily portfolio returns from ``first_row``, ``trades[b]`` = buys.

    ``states``/``helds``: (B, T, N) resolved state and held size; ``open_``/``mark``/``adv``: (T, N)
    with ``mark`` the forward-filled close (1.0 before the first bar) and ``adv`` the ADV known at
    the previous close; ``alive_lo``/``alive_hi``: each symbol's first and last bar row.
    """
    B, T, N = states.shape
    rets = np.empty((T, N))
    col = np.empty(T)
    row = np.empty(N)
    for b in range(B):
        n_buys = 0
        for j in range(N):
            n_buys += _column(states[b, :, j], helds[b, :, j], open_[:, j], mark[:, j], adv[:, j], alive_lo[j],
                              alive_hi[j], first_row, init_cash, fees, notional, slip_bps, impact_k, min_size, col)
            for t in range(T):
                rets[t, j] = col[t]
        for t in range(first_row, T):
            count = 0
            for j in range(N):
                r = rets[t, j]
                if np.isfinite(r):
                    row[j] = r
                    count += 1
                else:
                    row[j] = 0.0
            port[b, t - first_row] = row_sum(row) / count if count > 0 else np.nan
        trades[b] = n_buys
