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
    W = np.asarray(getattr(targets, "weights", targets), dtype=np.float64)
    if W.shape != market.shape:
        raise ValueError(f"book targets {W.shape} do not match the market {market.shape}")
    T, N = W.shape
    opens = market.open
    mark = ffill(market.close)
    adv = shift_down(ffill(costs.adv_dollar(market)), np.nan)  # known at the decision close
    borrow_daily = costs.borrow_bps * BPS / TRADING_DAYS
    shares, cash = np.zeros(N), float(init_cash)
    pending = np.full(N, np.nan)
    value, weights = np.empty(T), np.zeros((T, N))
    rows, cols, sizes, prices, fees_list = [], [], [], [], []
    borrow_paid = fees_paid = 0.0
    last_px = np.zeros(N)  # the last known price of each symbol (0 before its first bar)
    for t in range(T):
        o = opens[t]
        with np.errstate(invalid="ignore"):
            can = np.isfinite(o) & (o > 0)
        todo = can & np.isfinite(pending)
        if todo.any():
            px = np.where(can, o, last_px)
            equity = cash + float(shares @ px)
            dq = np.where(todo, pending * equity / np.where(can, o, 1.0) - shares, 0.0)
            hit = np.flatnonzero(dq != 0)
            if hit.size:
                q = dq[hit]
                slip = costs.slippage_fraction(np.abs(q) * o[hit], adv[t, hit])
                price = o[hit] * (1.0 + np.sign(q) * slip)
                fee = np.abs(q) * price * costs.fees
                cash -= float(q @ price) + float(fee.sum())
                fees_paid += float(fee.sum())
                shares[hit] += q
                rows.append(np.full(hit.size, t)), cols.append(hit), sizes.append(q)
                prices.append(price), fees_list.append(fee)
            pending[todo] = np.nan
        c = mark[t]
        last_px = np.where(np.isfinite(c), c, last_px)
        short_value = float(np.maximum(-shares, 0.0) @ last_px)
        if short_value:
            cash -= borrow_daily * short_value
            borrow_paid += borrow_daily * short_value
        held = shares * last_px
        value[t] = cash + float(held.sum())
        weights[t] = held / value[t] if value[t] else 0.0
        decided = np.isfinite(W[t])
        pending[decided] = W[t, decided]
    prev = np.r_[init_cash, value[:-1]]
    returns = value / prev - 1.0
    cat = (lambda parts, dtype=float: np.concatenate(parts) if parts else np.empty(0, dtype=dtype))
    r = cat(rows, np.int64)
    orders = pd.DataFrame({"date": market.dates[r], "symbol": np.asarray(market.symbols, dtype=object)[cat(cols, np.int64)],
                           "shares": cat(sizes), "price": cat(prices), "fees": cat(fees_list)})
    return BookResult(returns=pd.Series(returns, index=market.dates, name="return"),
                      value=pd.Series(value, index=market.dates, name="value"),
                      weights=pd.DataFrame(weights, index=market.dates, columns=list(market.symbols)),
                      orders=orders, borrow_paid=borrow_paid, fees_paid=fees_paid,
                      init_cash=float(init_cash))
