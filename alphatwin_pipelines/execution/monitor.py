"""Post-trade monitor: does the broker fill where the backtest assumed it would?

The backtest fills a close-of-t decision at the open of t+1 moved by the slippage model. A fill
that is worse than that by more than ``threshold_bps`` means the research overstated returns
(or the broker misbehaves), so it is flagged and written to the audit log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from alphatwin_pipelines.backtest.costs import CostModel
from alphatwin_pipelines.execution.model import Fill
from alphatwin_pipelines.execution.paper import fill_price


@dataclass(frozen=True)
class FillCheck:
    order_id: str
    symbol: str
    side: str
    session: str
    fill_price: float
    expected_price: float
    divergence_bps: float  # positive = worse for us than the backtest assumed
    flagged: bool


def monitor_fills(fills: list[Fill], opens: Mapping[tuple[str, str], float], *, threshold_bps: float,
                  costs: CostModel | None = None, adv: Mapping[tuple[str, str], float] | None = None) -> list[FillCheck]:
    """Check each fill against ``opens[(session, symbol)]`` moved by the slippage model (with
    ``adv[(session, symbol)]`` when known); fills without a known open are skipped."""
    if not threshold_bps > 0:
        raise ValueError(f"threshold_bps must be positive, got {threshold_bps}")
    costs = costs or CostModel()
    checks = []
    for fill in fills:
        open_price = opens.get((fill.session, fill.symbol))
        if open_price is None:
            continue
        expected = fill_price(fill.side, float(open_price), fill.qty, costs, (adv or {}).get((fill.session, fill.symbol)))
        adverse = (fill.price - expected) if fill.side == "buy" else (expected - fill.price)
        bps = adverse / expected * 1e4
        checks.append(FillCheck(fill.order_id, fill.symbol, fill.side, fill.session, fill.price, expected,
                                round(bps, 4), abs(bps) > threshold_bps))
    return checks
