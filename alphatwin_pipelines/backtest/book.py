"""The book engine: one account trading signed target weights across symbols (longs and shorts).

Input: :class:`~alphatwin_pipelines.strategies.books.BookTargets`, target fractions of equity
decided at the close of t (NaN = no decision). A decision fills at the symbol's next finite,
positive OPEN (normally t + 1; over missing bars it waits, and the latest decision wins):
the order takes the symbol from its shares to ``target * equity / open`` shares, where
``equity = cash + shares * price`` at that open (symbols without an open that day at their last
close). Costs as :class:`~.costs.CostModel`:

* the fill price moves against the order by ``slippage_bps + impact`` where impact uses the
  order's *actual* value ``|shares traded| * open`` against the ADV known at the decision close
  (the per-symbol engine uses a nominal value instead; a book's order sizes vary more);
* fees: ``fees_bps`` of the traded value (after slippage);
* borrow: every close, ``borrow_bps / 1e4 / 252`` of the market value of the short positions.

Short sales credit their proceeds to cash (no interest on cash, none on margin). Positions are
marked at the close, a missing close forward-filled; the return of t is
``value[t] / value[t - 1] - 1`` with ``value[-1] = init_cash``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from alphatwin_pipelines.backtest.costs import BPS, CostModel
from alphatwin_pipelines.backtest.orders import shift_down
from alphatwin_pipelines.strategies.families import ffill
from alphatwin_pipelines.strategies.market import MarketArrays

TRADING_DAYS = 252


@dataclass
class BookResult:
    returns: pd.Series  # daily book return
    value: pd.Series  # equity at each close
    weights: pd.DataFrame  # (T, N) signed position value / equity after each close
    orders: pd.DataFrame  # one row per fill: date, symbol, shares (signed), price, fees
    borrow_paid: float
    fees_paid: float
    init_cash: float

    @property
    def gross(self) -> pd.Series:
        return self.weights.abs().sum(axis=1).rename("gross_exposure")

    @property
    def net(self) -> pd.Series:
        return self.weights.sum(axis=1).rename("net_exposure")

    @property
    def total_return(self) -> float:
        return float(self.value.iloc[-1] / self.init_cash - 1.0)


def simulate_book(targets, market: MarketArrays, costs: CostModel | None = None,
                  init_cash: float = 100_000.0) -> BookResult:
    """Trade ``targets`` (BookTargets or a (T, N) array) on ``market`` (module docstring)."""
    costs = CostModel() if costs is None else costs
    W = np.ascontiguousarray(getattr(targets, "weights", targets), dtype=np.float64)
    if W.shape != market.shape:
        raise ValueError(f"book targets {W.shape} do not match the market {market.shape}")
    adv = shift_down(ffill(costs.adv_dollar(market)), np.nan)  # known at the decision close
    value, weights, traded, price, paid = _kernel()(
        W, market.open, np.ascontiguousarray(ffill(market.close)), np.ascontiguousarray(adv), float(init_cash),
        costs.fees, costs.slippage_bps * BPS, costs.impact_k_bps * BPS, costs.borrow_bps * BPS / TRADING_DAYS)
    rows, cols = np.nonzero(traded)
    q, px = traded[rows, cols], price[rows, cols]
    orders = pd.DataFrame({"date": market.dates[rows], "symbol": np.asarray(market.symbols, dtype=object)[cols],
                           "shares": q, "price": px, "fees": np.abs(q) * px * costs.fees})
    prev = np.r_[init_cash, value[:-1]]
    return BookResult(returns=pd.Series(value / prev - 1.0, index=market.dates, name="return"),
                      value=pd.Series(value, index=market.dates, name="value"),
                      weights=pd.DataFrame(weights, index=market.dates, columns=list(market.symbols)),
                      orders=orders, borrow_paid=float(paid[1]), fees_paid=float(paid[0]), init_cash=float(init_cash))


@functools.lru_cache(maxsize=1)
def _kernel():
    import numba  # lazy, like vectorbt: importing the backtest package leaves numba alone

    return numba.njit(cache=True)(_book_loop)


def _book_loop(W, opens, mark, adv, init_cash, fee_rate, slippage, impact_k, borrow_daily):
    """The row loop of :func:`simulate_book` (plain loops: compiled with numba). ``slippage`` and
    ``impact_k`` are fractions; the impact law is :meth:`CostModel.slippage_fraction`'s on the
    order's actual value (tests/test_books.py checks the whole against an event loop)."""
    T, N = W.shape
    shares = np.zeros(N)
    pending = np.full(N, np.nan)
    last = np.zeros(N)  # the last known close of each symbol (0 before its first bar)
    value = np.empty(T)
    weights = np.zeros((T, N))
    traded = np.zeros((T, N))  # shares bought (+) or sold (-) at the open of t
    price = np.zeros((T, N))  # their fill price
    cash = init_cash
    paid = np.zeros(2)  # fees, borrow
    for t in range(T):
        equity = cash
        todo = False
        for j in range(N):
            o = opens[t, j]
            tradable = o == o and o > 0
            equity += shares[j] * (o if tradable else last[j])
            todo = todo or (tradable and pending[j] == pending[j])
        if todo:
            for j in range(N):
                o = opens[t, j]
                if not (pending[j] == pending[j] and o == o and o > 0):
                    continue
                q = pending[j] * equity / o - shares[j]
                pending[j] = np.nan
                if q == 0.0:
                    continue
                slip = slippage
                if impact_k > 0.0:
                    a = adv[t, j]
                    part = abs(q) * o / a if (a == a and a > 0.0) else 1.0
                    slip += impact_k * np.sqrt(min(max(part, 0.0), 1.0))
                px = o * (1.0 + slip) if q > 0 else o * (1.0 - slip)
                fee = abs(q) * px * fee_rate
                cash -= q * px + fee
                paid[0] += fee
                shares[j] += q
                traded[t, j] = q
                price[t, j] = px
        short_value = 0.0
        held = 0.0
        for j in range(N):
            c = mark[t, j]
            if c == c:
                last[j] = c
            if shares[j] < 0:
                short_value -= shares[j] * last[j]
            held += shares[j] * last[j]
        cash -= borrow_daily * short_value
        paid[1] += borrow_daily * short_value
        value[t] = cash + held
        for j in range(N):
            weights[t, j] = shares[j] * last[j] / value[t] if value[t] != 0 else 0.0
            if W[t, j] == W[t, j]:
                pending[j] = W[t, j]
    return value, weights, traded, price, paid
