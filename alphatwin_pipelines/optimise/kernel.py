"""The objective's backtest fused into one compiled pass per strategy over its N symbols.

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
def _trades(state, held, open_, first_row, state2, sparse):
    """Step 1-2 for every column: ``state2`` = the trades opened from ``first_row`` on; ``sparse[j]``
    = every fill row after one of j's decisions has a price (else decisions wait: the dense plan)."""
    T, N = state.shape
    for j in range(N):
        sparse[j] = True
    # Before first_row nothing can open (an entry needs t >= first_row), so state2 is flat there.
    for t in range(min(first_row, T)):
        for j in range(N):
            state2[t, j] = False
    for t in range(first_row, T):
        for j in range(N):
            prev = state[t - 1, j] if t > 0 else False
            before = state2[t - 1, j] if t > 0 else False
            now = before
            if state[t, j] and not prev:  # an entry decision
                if t >= first_row and held[t, j] > 0:
                    now = True
            elif prev and not state[t, j]:  # an exit decision
                now = False
            state2[t, j] = now
            if now != before and t + 1 < T:
                px = open_[t + 1, j]
                if not (np.isfinite(px) and px > 0):
                    sparse[j] = False


@njit(cache=True, nogil=True)
def strategy_kernel(state, held, open_, mark, adv, alive_lo, alive_hi, first_row, init_cash, fees, notional,
                  slip_bps, impact_k, min_size, state2, sparse, port):
    """Steps 1-5 for one strategy: ``port`` = its daily portfolio returns from ``first_row``; returns
    the number of filled buys.

    ``state``/``held``: (T, N) resolved state and held size; ``open_``/``mark``/``adv``: (T, N) with
    ``mark`` the forward-filled close (1.0 before the first bar) and ``adv`` the ADV known at the
    previous close; ``alive_lo``/``alive_hi``: each symbol's first and last bar row; ``state2``
    (T, N) bool and ``sparse`` (N,) bool are scratch. Rows outer, symbols inner: every array is
    read in memory order.
    """
    T, N = state.shape
    _trades(state, held, open_, first_row, state2, sparse)
    cash = np.full(N, init_cash)
    position = np.zeros(N)
    debt = np.zeros(N)
    free_cash = np.full(N, init_cash)
    flow_cash = np.zeros(N)
    shares = np.zeros(N)
    cur = np.zeros(N)  # dense plan: the target of the last tradable row
    last_value = np.full(N, init_cash)
    row = np.empty(N)
    buys = 0
    # Rows before first_row place no order (state2 is flat there) and every account stays at
    # init_cash, so the loop starts at first_row from the initial accounts: the same values.
    for t in range(first_row, T):
        count = 0
        for j in range(N):
            side = 0  # 1 buy, -1 sell
            fraction = 0.0
            if t > 0:
                s1 = state2[t - 1, j]
                s2 = state2[t - 2, j] if t > 1 else False
                target = held[t - 1, j] if s1 else 0.0
                if sparse[j]:
                    if s1 and not s2:
                        side, fraction = 1, target
                    elif s2 and not s1:
                        side, fraction = -1, held[t - 2, j]
                else:
                    px = open_[t, j]
                    if np.isfinite(px) and px > 0:
                        if (target > 0) != (cur[j] > 0):
                            if target > 0:
                                side, fraction = 1, target
                            else:
                                side, fraction = -1, cur[j]
                        cur[j] = target
            if side != 0:
                slip = _slippage(fraction, adv[t, j], notional, slip_bps, impact_k)
                exec_state = ExecuteOrderState(cash=cash[j], position=position[j], debt=debt[j],
                                               free_cash=free_cash[j])
                if side > 0:
                    new_state, res = buy_nb(exec_state, np.inf, open_[t, j], Direction.LongOnly, fees, 0.0, slip,
                                            min_size, np.inf, np.nan, False, True, fraction)
                else:
                    new_state, res = sell_nb(exec_state, np.inf, open_[t, j], Direction.LongOnly, fees, 0.0, slip,
                                             min_size, np.inf, np.nan, False, True, 1.0)
                if res.status == 0:  # filled
                    cash[j], position[j] = new_state.cash, new_state.position
                    debt[j], free_cash[j] = new_state.debt, new_state.free_cash
                    if side > 0:
                        shares[j] += res.size
                        flow_cash[j] += -res.size * res.price - res.fees
                        buys += 1
                    else:
                        shares[j] += -res.size
                        flow_cash[j] += res.size * res.price - res.fees
            value = (flow_cash[j] + init_cash) + shares[j] * mark[t, j]
            ret = (value - last_value[j]) / last_value[j]
            last_value[j] = value
            if t >= first_row:
                if alive_lo[j] <= t <= alive_hi[j] and np.isfinite(ret):
                    row[j] = ret
                    count += 1
                else:
                    row[j] = 0.0
        if t >= first_row:
            port[t - first_row] = row_sum(row) / count if count > 0 else np.nan
    return buys
