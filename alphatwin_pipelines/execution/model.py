"""Orders, fills and the broker interface shared by the paper ledger and Alpaca.

Order ids are derived from ``allocation_version + symbol + side`` so that acting on the same
allocation twice (a sensor re-firing, a retried run, a restart after a crash) produces the
same id, and every broker can recognise the second submission as a duplicate instead of
trading twice.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

SIDES = ("buy", "sell")


def order_id_for(allocation_version: str, symbol: str, side: str) -> str:
    if side not in SIDES:
        raise ValueError(f"order side must be one of {SIDES}, got {side!r}")
    digest = hashlib.sha256(f"{allocation_version}|{symbol}|{side}".encode()).hexdigest()
    return f"at-{digest[:29]}"


@dataclass(frozen=True)
class Order:
    """A whole-share order decided after the close of ``session`` (fills at the next open)."""

    allocation_version: str
    symbol: str
    side: str
    qty: int
    reference_price: float  # the close it was sized at
    session: str  # YYYY-MM-DD of that close
    target_weight: float = 0.0
    spec_hashes: tuple[str, ...] = ()
    scanner_partition: str = ""

    def __post_init__(self):
        if self.side not in SIDES:
            raise ValueError(f"order for {self.symbol}: side must be one of {SIDES}, got {self.side!r}")
        if int(self.qty) <= 0:
            raise ValueError(f"order for {self.symbol}: qty must be a positive whole number, got {self.qty}")

    @property
    def order_id(self) -> str:
        return order_id_for(self.allocation_version, self.symbol, self.side)

    @property
    def signed_qty(self) -> int:
        return int(self.qty) if self.side == "buy" else -int(self.qty)

    @property
    def notional(self) -> float:
        return abs(self.qty * self.reference_price)

    def audit_detail(self) -> dict:
        return {"side": self.side, "qty": int(self.qty), "reference_price": self.reference_price,
                "session": self.session, "target_weight": self.target_weight}

    @property
    def spec_hashes_json(self) -> str:
        return json.dumps(sorted(self.spec_hashes))


@dataclass(frozen=True)
class Fill:
    order_id: str
    symbol: str
    side: str
    qty: int
    price: float  # after slippage
    session: str
    fees: float = 0.0
    reference_open: float | None = None  # the open before slippage, when known

    @property
    def signed_qty(self) -> int:
        return int(self.qty) if self.side == "buy" else -int(self.qty)


@dataclass(frozen=True)
class SubmitResult:
    order_id: str
    symbol: str
    status: str  # "submitted" | "duplicate"
    detail: str = ""


@dataclass
class AccountState:
    cash: float
    positions: dict[str, int] = field(default_factory=dict)

    def equity(self, prices) -> float:
        missing = sorted(s for s, q in self.positions.items() if q and s not in prices)
        if missing:
            raise ValueError(f"no price to value held position(s) {missing}: load bars for them first")
        return float(self.cash + sum(q * float(prices[s]) for s, q in self.positions.items()))


class Broker(ABC):
    """What the execution run needs from a broker: submit idempotently, read state, cancel.

    ``can_short``: whether the account may hold negative positions. Where it is False, an order
    that would take a position below zero is rejected by the safeguards with a reason naming the
    broker (book families trade shorts: cross-sectional long/short, pairs).
    """

    can_short: bool = False

    @abstractmethod
    def submit(self, orders: list[Order]) -> list[SubmitResult]:
        """Submit each order once; an order whose id the broker already has comes back ``duplicate``."""

    @abstractmethod
    def positions(self) -> dict[str, int]: ...

    @abstractmethod
    def cash(self) -> float: ...

    @abstractmethod
    def fills(self) -> list[Fill]: ...

    @abstractmethod
    def pending(self) -> list[Order]:
        """Orders accepted but not yet filled or cancelled."""

    @abstractmethod
    def cancel(self, order_id: str, reason: str = "") -> bool:
        """Cancel a pending order; False when it was no longer pending."""

    def collect_fills(self) -> list[Fill]:
        """Fills the broker made on its own since the last call (a simulated broker fills in ``settle``)."""
        return []

    def account(self) -> AccountState:
        return AccountState(cash=self.cash(), positions=self.positions())
