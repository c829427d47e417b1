"""From close-of-t signals to a sparse list of orders, and from order records back to accounts.

Fill convention (default ``fill="next_open"``): a decision at the close of session t fills
at the OPEN of the symbol's next bar with a finite, positive open (normally t + 1; over
missing bars the decision waits, and the latest decision wins). ``fill="next_close"`` fills
at the next bar's close instead. Long-only: an entry buys with ``size`` (equity fraction,
1.0 = all cash) of the column's cash, an exit sells the whole position.

Event-time packing: with percent-of-cash entries and sell-everything exits, an order's fill
depends only on the column's cash and shares, which change only at orders. So vectorbt can
simulate each column on its own *event axis* (row m = the column's m-th order, plus one last
row carrying the final close for open trades) instead of the full (T, K) calendar: the same
fills, fees and trade records, far fewer cells for daily strategies. ``simulate(...,
compress=False)`` runs the full calendar instead; a test checks both agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alphatwin_pipelines.backtest.costs import CostModel
from alphatwin_pipelines.strategies import MarketArrays, Signals
from alphatwin_pipelines.strategies.families import ffill
from alphatwin_pipelines.strategies.filters import resolve, transitions

FILLS = ("next_open", "next_close")


def shift_down(x: np.ndarray, fill) -> np.ndarray:
    out = np.empty_like(x)
    out[0] = fill
    out[1:] = x[:-1]
    return out


@dataclass
class OrderPlan:
    """Orders sorted by (column, row). ``size``: +f buys with fraction f of cash, -1 sells all."""

    rows: np.ndarray
    cols: np.ndarray
    size: np.ndarray
    price: np.ndarray  # the bar's open (or close), before slippage
    slippage: np.ndarray  # slippage + impact, as a fraction of the price
    shape: tuple[int, int]

    @property
    def n_orders(self) -> int:
        return int(self.rows.size)

    def dense(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(T, K) size, price and slippage arrays (NaN size = no order)."""
        size = np.full(self.shape, np.nan)
        price = np.full(self.shape, np.nan)
        slip = np.zeros(self.shape)
        size[self.rows, self.cols] = self.size
        price[self.rows, self.cols] = self.price
        slip[self.rows, self.cols] = self.slippage
        return size, price, slip

    def packed(self, last_close: np.ndarray):
        """(M, K) event-axis arrays and the calendar row of every event row.

        Row m of column k holds k's m-th order; the rows after its last order (at least one)
        carry ``last_close[k]`` so vectorbt marks open trades at the final close.
        """
        T, K = self.shape
        counts = np.bincount(self.cols, minlength=K)
        m = np.arange(self.n_orders) - (np.cumsum(counts) - counts)[self.cols]
        M = int(counts.max(initial=0)) + 1
        size = np.full((M, K), np.nan)
        price = np.full((M, K), np.nan)
        slip = np.zeros((M, K))
        close = np.broadcast_to(last_close, (M, K)).copy()
        calendar_row = np.full((M, K), T - 1, dtype=np.int64)
        size[m, self.cols] = self.size
        price[m, self.cols] = self.price
        slip[m, self.cols] = self.slippage
        close[m, self.cols] = self.price
        calendar_row[m, self.cols] = self.rows
        return size, price, slip, close, calendar_row


def resolved_transitions(signals: Signals) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entry rows, exit rows and the in-trade equity fraction, running the state machine if needed."""
    if signals.resolved:
        return signals.entries, signals.exits, signals.size
    state, held = resolve(signals.entries, signals.exits, signals.size)
    entries, exits = transitions(state)
    return entries, exits, held


def _sparse_orders(entries, exits, size):
    """A decision at row t fills at row t + 1 (none from the last row): valid when every such
    row has a price, which :func:`plan_orders` checks."""
    er, ec = np.nonzero(entries[:-1])
    xr, xc = np.nonzero(exits[:-1])
    rows = np.concatenate([er + 1, xr + 1])
    cols = np.concatenate([ec, xc])
    fraction = np.concatenate([size[er, ec], size[np.maximum(xr - 1, 0), xc]])  # a trade's fraction
    is_buy = np.concatenate([np.ones(er.size, dtype=bool), np.zeros(xr.size, dtype=bool)])
    order = np.lexsort((rows, cols))
    return rows[order], cols[order], fraction[order], is_buy[order]


def _dense_orders(entries, exits, size, tradable):
    """Decisions wait over rows without a price; the latest decision wins."""
    state = np.cumsum(entries, axis=0, dtype=np.int32) > np.cumsum(exits, axis=0, dtype=np.int32)
    held = shift_down(np.where(state, size, 0.0), 0.0)
    held = np.nan_to_num(ffill(np.where(tradable, held, np.nan)), nan=0.0)
    on = held > 0
    change = on.copy()
    change[1:] ^= on[:-1]
    rows, cols = np.nonzero(change)
    by_col = np.argsort(cols, kind="stable")  # rows stay sorted within each column
    rows, cols = rows[by_col], cols[by_col]
    is_buy = on[rows, cols]
    fraction = np.where(is_buy, held[rows, cols], held[np.maximum(rows - 1, 0), cols])
    return rows, cols, fraction, is_buy


def plan_orders(signals: Signals, market: MarketArrays, costs: CostModel, init_cash: float,
                fill: str = "next_open") -> OrderPlan:
    """Turn close-of-t signals into next-bar orders with their costs (module docstring)."""
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    if signals.shape[0] != market.shape[0] or (signals.symbol_index is None and signals.shape[1] != market.shape[1]):
        raise ValueError(f"signals {signals.shape} do not match the market {market.shape}")
    sym = signals.symbol_index if signals.symbol_index is not None else np.arange(signals.shape[1])
    px = market.open if fill == "next_open" else market.close
    tradable = np.isfinite(px) & (px > 0)
    entries, exits, size = resolved_transitions(signals)
    rows, cols, fraction, is_buy = _sparse_orders(entries, exits, size)
    missing = ~tradable[rows, sym[cols]]
    if missing.any():  # some fill rows have no price: those columns take the waiting (dense) path
        redo = np.unique(cols[missing])
        keep = ~np.isin(cols, redo)
        r2, c2, f2, b2 = _dense_orders(entries[:, redo], exits[:, redo], size[:, redo], tradable[:, sym[redo]])
        rows, cols = np.concatenate([rows[keep], r2]), np.concatenate([cols[keep], redo[c2]])
        fraction, is_buy = np.concatenate([fraction[keep], f2]), np.concatenate([is_buy[keep], b2])
        order = np.lexsort((rows, cols))
        rows, cols, fraction, is_buy = rows[order], cols[order], fraction[order], is_buy[order]
    adv = shift_down(ffill(costs.adv_dollar(market)), np.nan)  # ADV known at the decision close
    notional = (costs.impact_notional or init_cash) * fraction
    return OrderPlan(
        rows=rows, cols=cols, size=np.where(is_buy, fraction, -1.0), price=px[rows, sym[cols]],
        slippage=costs.slippage_fraction(notional, adv[rows, sym[cols]]), shape=signals.shape,
    )


def account(rows, cols, side, size, price, fees, shape, init_cash: float) -> tuple[np.ndarray, np.ndarray]:
    """Shares and cash after each row, rolled up from filled orders (calendar rows).

    vectorbt's bookkeeping (``pf.assets()`` / ``pf.cash()``): a buy adds ``size`` shares and
    costs ``size * price + fees``; a sell removes them and pays ``size * price - fees``. Done
    as row-wise cumulative sums: vectorbt's own kernels walk the C-ordered (T, K) arrays
    column by column and wrap every step in a DataFrame that pandas copies, which is slower on
    wide grids. A test checks the result against ``pf.assets()`` and ``pf.cash()``.
    """
    flow = np.zeros(shape)
    cash = np.zeros(shape)
    sign = np.where(side == 0, 1.0, -1.0)
    flow[rows, cols] = sign * size  # one order per (row, column) at most
    cash[rows, cols] = -sign * size * price - fees
    shares = np.cumsum(flow, axis=0)  # exact: an exit sells exactly the shares bought
    cash = np.cumsum(cash, axis=0)
    cash += init_cash
    return shares, cash
