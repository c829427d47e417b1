"""Transaction costs: proportional fees, slippage and a square-root market-impact term.

Costs are ON by default (``CostModel()``): 5 bp fees, 5 bp slippage, impact coefficient
100 bp. For an order of value ``Q`` in a symbol whose average daily dollar volume is ``ADV``:

* **fees**: ``fees_bps / 1e4 * traded value`` (traded value = shares * fill price after
  slippage), paid in cash on both sides, as vectorbt's ``fees``.
* **slippage + impact**: the fill price moves against the order by
  ``(slippage_bps + impact_bps) / 1e4`` (buy: ``price * (1 + s)``, sell: ``price * (1 - s)``),
  as vectorbt's ``slippage``, with the square-root law of market impact::

      participation = Q / ADV                        (ADV = mean(volume * close) over the last
                                                      adv_window bars up to the signal close)
      impact_bps    = impact_k_bps * sqrt(min(participation, 1))

  ``impact_k_bps`` plays the role of ``Y * sigma_daily`` in the usual ``Y sigma sqrt(Q/V)``
  form (Y ~ 0.5-1, sigma ~ 1-2 % a day gives ~100 bp). The participation is capped at 1 (so
  impact <= impact_k_bps) and is taken as 1 when ADV is unknown or zero.

  ``Q`` is the *nominal* order value ``impact_notional * size`` (``impact_notional`` defaults
  to the backtest's ``init_cash``; ``size`` is the equity fraction of the entry, and an exit
  uses the size of the trade it closes). Using a nominal value keeps the slippage a plain
  (T, K) array that vectorbt takes before the simulation; it understates impact for an
  account that has grown and overstates it for one that has shrunk. For S&P 500 names and a
  100k account, participation is below 1e-3 and impact below ~3 bp.

**borrow** (book families only, see :mod:`.book`): a short position pays ``borrow_bps`` a year
of its market value, charged at every close it is held as ``borrow_bps / 1e4 / 252`` of the
short value at that close.

``adv`` is computed on the same price basis as the market arrays (adjusted volume * adjusted
close is invariant to splits).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import talib

from alphatwin_pipelines.strategies.families import per_column
from alphatwin_pipelines.strategies.market import MarketArrays

BPS = 1e-4


@dataclass(frozen=True)
class CostModel:
    fees_bps: float = 5.0
    slippage_bps: float = 5.0
    impact_k_bps: float = 100.0
    adv_window: int = 20
    impact_notional: float | None = None  # None: the backtest's init_cash
    borrow_bps: float = 50.0  # annual cost of borrowing shares to short, on the short value

    def __post_init__(self):
        for name in ("fees_bps", "slippage_bps", "impact_k_bps", "borrow_bps"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {v}")
        if int(self.adv_window) < 1:
            raise ValueError("adv_window must be at least 1")

    @classmethod
    def zero(cls) -> "CostModel":
        """No fees, no slippage, no impact, no borrow cost."""
        return cls(fees_bps=0.0, slippage_bps=0.0, impact_k_bps=0.0, borrow_bps=0.0)

    @property
    def fees(self) -> float:
        """Fees as a fraction of traded value (vectorbt's ``fees``)."""
        return self.fees_bps * BPS

    def adv_dollar(self, market: MarketArrays) -> np.ndarray:
        """(T, N) mean of ``volume * close`` over the last ``adv_window`` bars of each symbol."""
        return per_column(talib.SMA, market.volume * market.close, timeperiod=int(self.adv_window))

    def impact_bps(self, order_value, adv) -> np.ndarray:
        """``impact_k_bps * sqrt(min(order_value / adv, 1))``; participation 1 if adv is unknown."""
        order_value = np.abs(np.asarray(order_value, dtype=float))
        adv = np.asarray(adv, dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            part = np.where(np.isfinite(adv) & (adv > 0), order_value / adv, 1.0)
        return self.impact_k_bps * np.sqrt(np.clip(part, 0.0, 1.0))

    def slippage_fraction(self, order_value, adv) -> np.ndarray:
        """Total adverse price move of an order, as a fraction (vectorbt's ``slippage``)."""
        if self.impact_k_bps == 0:
            return np.full(np.broadcast(np.asarray(order_value), np.asarray(adv)).shape, self.slippage_bps * BPS)
        return (self.slippage_bps + self.impact_bps(order_value, adv)) * BPS
