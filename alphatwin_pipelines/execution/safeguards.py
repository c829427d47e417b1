"""Pre-trade safeguards. Every rejected order carries the rule it broke and by how much.

Limits are configurable, but never beyond ``HARD_BOUNDS``: those are code, reviewed like code,
so a typo in run config cannot switch risk control off (``Limits`` refuses them when built).
Orders that only shrink an existing position always pass the exposure, position, loss and
correlation rules (de-risking must stay possible); the order-notional rule applies to all.
Orders are decided one by one (risk-reducing first, then by symbol) against the portfolio as
it would be after the orders already accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from alphatwin_pipelines.execution.model import AccountState, Order

HARD_BOUNDS: dict[str, float] = {
    "max_position_weight": 0.25,
    "max_order_notional": 250_000.0,
    "max_daily_loss": 0.10,
    "max_gross_exposure": 1.5,
    "max_net_exposure": 1.0,
    "max_correlated_weight": 0.60,
    "correlation_threshold": 0.95,
}


class LimitConfigError(ValueError):
    """A configured limit is outside what the code allows."""


@dataclass(frozen=True)
class Limits:
    max_position_weight: float = 0.10
    max_order_notional: float = 25_000.0
    max_daily_loss: float = 0.03
    max_gross_exposure: float = 1.0
    max_net_exposure: float = 1.0
    max_correlated_weight: float = 0.35
    correlation_threshold: float = 0.80
    correlation_lookback: int = 60

    def __post_init__(self):
        for name, bound in HARD_BOUNDS.items():
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise LimitConfigError(f"{name} must be a positive number, got {value}")
            if value > bound:
                raise LimitConfigError(
                    f"{name}={value} exceeds the hard-coded bound {bound} "
                    "(alphatwin_pipelines/execution/safeguards.py HARD_BOUNDS); configure a value <= the bound"
                )
        if not 20 <= int(self.correlation_lookback) <= 504:
            raise LimitConfigError(f"correlation_lookback must be between 20 and 504 sessions, got {self.correlation_lookback}")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Decision:
    accepted: list[Order] = field(default_factory=list)
    rejected: list[tuple[Order, str]] = field(default_factory=list)


def correlated_groups(returns: pd.DataFrame, threshold: float, lookback: int) -> dict[str, frozenset[str]]:
    """Symbols linked by pairwise return correlation >= ``threshold`` over the last ``lookback`` rows.

    ``returns`` is dates × symbols (daily returns up to the decision close, never later). Links are
    chained (single linkage), so A~B and B~C put A, B and C in one group.
    """
    recent = returns.sort_index().tail(int(lookback))
    usable = [c for c in recent.columns if recent[c].count() >= max(10, int(lookback) // 2)]
    corr = recent[usable].corr(min_periods=max(10, int(lookback) // 2)).to_numpy()
    parent = list(range(len(usable)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.where(np.triu(corr >= threshold, k=1))):
        parent[root(i)] = root(j)
    members: dict[int, set[str]] = {}
    for i, symbol in enumerate(usable):
        members.setdefault(root(i), set()).add(symbol)
    return {s: frozenset(g) for g in members.values() if len(g) > 1 for s in g}


def check_orders(orders: list[Order], account: AccountState, prices: Mapping[str, float], limits: Limits,
                 *, daily_return: float | None = None, returns: pd.DataFrame | None = None,
                 can_short: bool = True, broker_name: str = "broker") -> Decision:
    equity = account.equity(prices)
    if equity <= 0:
        raise ValueError(f"account equity is {equity:.2f}; no order can pass the safeguards")
    held = {s: int(q) for s, q in account.positions.items()}
    groups = correlated_groups(returns, limits.correlation_threshold, limits.correlation_lookback) \
        if returns is not None and len(returns.columns) > 1 else {}
    decision = Decision()

    def weight(symbol, qty):
        return qty * float(prices[symbol]) / equity

    def reduces(order):
        before, after = held.get(order.symbol, 0), held.get(order.symbol, 0) + order.signed_qty
        return abs(after) < abs(before) and after * before >= 0

    for order in sorted(orders, key=lambda o: (not reduces(o), o.symbol)):
        reasons = []
        if order.notional > limits.max_order_notional:
            reasons.append(f"order notional ${order.notional:,.2f} exceeds max_order_notional "
                           f"${limits.max_order_notional:,.2f}")
        if not can_short and held.get(order.symbol, 0) + order.signed_qty < 0:
            reasons.append(f"{order.symbol}: the order would leave a short position of "
                           f"{held.get(order.symbol, 0) + order.signed_qty} shares and the {broker_name} cannot "
                           "short; trade a long-only allocation with this broker or use one that can short")
        if not reduces(order):
            after = dict(held)
            after[order.symbol] = after.get(order.symbol, 0) + order.signed_qty
            w = {s: weight(s, q) for s, q in after.items() if q}
            position = w.get(order.symbol, 0.0)
            if abs(position) > limits.max_position_weight:
                reasons.append(f"position in {order.symbol} would be {position:.2%} of equity, above "
                               f"max_position_weight {limits.max_position_weight:.2%}")
            if daily_return is not None and -daily_return > limits.max_daily_loss:
                reasons.append(f"daily loss {-daily_return:.2%} since the previous equity mark exceeds "
                               f"max_daily_loss {limits.max_daily_loss:.2%}; only risk-reducing orders pass")
            gross, net = sum(abs(v) for v in w.values()), sum(w.values())
            if gross > limits.max_gross_exposure:
                reasons.append(f"gross exposure would be {gross:.2%}, above max_gross_exposure "
                               f"{limits.max_gross_exposure:.2%}")
            if abs(net) > limits.max_net_exposure:
                reasons.append(f"net exposure would be {net:.2%}, above max_net_exposure {limits.max_net_exposure:.2%}")
            group = groups.get(order.symbol)
            if group:
                group_weight = sum(abs(w.get(s, 0.0)) for s in group)
                if group_weight > limits.max_correlated_weight:
                    reasons.append(
                        f"correlated group {sorted(group)} (pairwise return correlation >= "
                        f"{limits.correlation_threshold} over {limits.correlation_lookback} sessions) would hold "
                        f"{group_weight:.2%} of equity, above max_correlated_weight {limits.max_correlated_weight:.2%}")
        if reasons:
            decision.rejected.append((order, "; ".join(reasons)))
        else:
            decision.accepted.append(order)
            held[order.symbol] = held.get(order.symbol, 0) + order.signed_qty
    return decision
