"""One execution run for one allocation version, without Dagster (runnable from plain Python).

settle what the new opens allow → cancel orders of older versions → mark equity → size orders at
the close of the allocation's ``as_of`` session → safeguards → submit → monitor fills. Prices
are the cleaned, *unadjusted* bars (what a broker trades); correlations use adjusted returns as
of the decision session, so nothing after it is used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd
import sqlalchemy as sa

from alphatwin_pipelines.backtest.costs import CostModel
from alphatwin_pipelines.calendar import previous_sessions
from alphatwin_pipelines.execution import ledger as L
from alphatwin_pipelines.execution.model import Broker, Fill
from alphatwin_pipelines.execution.monitor import FillCheck, monitor_fills
from alphatwin_pipelines.execution.orders import Dust, generate_orders
from alphatwin_pipelines.execution.paper import PaperBroker
from alphatwin_pipelines.execution.safeguards import Limits, check_orders
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import CLEANED, read_adjusted, version_table


def allocation_path(data_dir, version: str):
    """The immutable file of one allocation version (a ``UPath`` when the data is on an object store)."""
    return TableStore(data_dir).whole_path(version_table(version))


def read_allocation(data_dir, version: str) -> pd.DataFrame:
    store = TableStore(data_dir)
    path = store.whole_path(version_table(version))
    if not path.exists():
        raise FileNotFoundError(f"allocation version {version!r} not found at {path}: materialise "
                                "portfolio_allocations (it keeps every version immutable there) or fix the version")
    return store.read_table(version_table(version))


@dataclass
class ExecutionReport:
    allocation_version: str
    session: str
    equity: float
    daily_return: float | None
    fills: list[Fill] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    dust: list[Dust] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    checks: list[FillCheck] = field(default_factory=list)
    superseded_by: str | None = None

    @property
    def divergent(self) -> list[FillCheck]:
        return [c for c in self.checks if c.flagged]

    def summary(self) -> dict:
        return {
            "allocation_version": self.allocation_version, "session": self.session, "equity": round(self.equity, 2),
            "daily_return": self.daily_return, "fills": len(self.fills), "submitted": len(self.submitted),
            "duplicates_skipped": len(self.duplicates), "rejected": len(self.rejected),
            "dust_skipped": len(self.dust), "cancelled": len(self.cancelled), "divergent_fills": len(self.divergent),
            "superseded_by": self.superseded_by or "",
        }


class _Bars:
    """Unadjusted opens and closes, and the dollar-volume ADV known before each open, from cleaned_ohlcv."""

    def __init__(self, store: TableStore, start, costs: CostModel):
        frame = store.read_partitions(CLEANED, start, None, columns=["date", "symbol", "open", "close", "volume"])
        frame["session"] = pd.to_datetime(frame["date"]).dt.strftime("%Y-%m-%d")
        wide = frame.assign(dollars=frame["volume"] * frame["close"]).pivot(
            index="session", columns="symbol", values=["open", "close", "dollars"])
        self.open, self.close = wide["open"], wide["close"]
        self.adv = wide["dollars"].rolling(int(costs.adv_window), min_periods=1).mean().shift(1)
        self.sessions = list(wide.index)

    @staticmethod
    def at(table: pd.DataFrame, session: str) -> dict[str, float]:
        return table.loc[session].dropna().to_dict() if session in table.index else {}

    @staticmethod
    def keyed(table: pd.DataFrame) -> dict[tuple[str, str], float]:
        return table.stack().dropna().to_dict()


def superseded_by(ledger, version: str, session: str) -> str | None:
    """A newer version already acted on, if any: a late re-run of an old version must not trade.

    Newer = submitted after this version's first submission or, when this version never
    submitted, decided on a later session. Read from the audit log, so it holds for every broker.
    """
    log = L.audit_log
    with ledger.connect() as conn:
        rows = conn.execute(sa.select(log.c.seq, log.c.allocation_version, log.c.detail)
                            .where(log.c.event == "submitted").order_by(log.c.seq)).all()
    own = next((r.seq for r in rows if r.allocation_version == version), None)
    for row in rows:
        if row.allocation_version == version:
            continue
        if (own is not None and row.seq > own) or (own is None and json.loads(row.detail).get("session", "") > session):
            return row.allocation_version
    return None


def execute_allocation(data_dir, broker: Broker, ledger, version: str, *, limits: Limits | None = None,
                       costs: CostModel | None = None, min_notional: float = 100.0,
                       divergence_bps: float = 25.0) -> ExecutionReport:
    limits, costs, store = limits or Limits(), costs or CostModel(), TableStore(data_dir)
    allocation = read_allocation(data_dir, version)
    session = pd.Timestamp(allocation["as_of"].iloc[0]).strftime("%Y-%m-%d")
    newer = superseded_by(ledger, version, session)
    if newer is not None:
        with ledger.begin() as conn:
            L.audit(conn, "run", allocation_version=version, detail={"skipped": f"superseded by {newer}"})
        return ExecutionReport(version, session, float("nan"), None, superseded_by=newer)
    history_start = previous_sessions(session, int(limits.correlation_lookback) + int(costs.adv_window) + 5)[0]
    bars = _Bars(store, history_start, costs)
    pending_since = min((o.session for o in broker.pending()), default=None)

    fills: list[Fill] = []
    if isinstance(broker, PaperBroker) and pending_since is not None:
        for s in (s for s in bars.sessions if pending_since < s <= session):  # opens known at decision time
            fills += broker.settle(s, bars.at(bars.open, s), bars.at(bars.adv, s))
    elif not isinstance(broker, PaperBroker):
        fills = broker.collect_fills()
    cancelled = [o.order_id for o in broker.pending() if o.allocation_version != version
                 and broker.cancel(o.order_id, f"superseded by allocation {version}")]

    # Marks use each symbol's last close up to the session (a missing or quarantined bar must not
    # make a held position unpriceable); the session itself must have bars.
    closes = bars.at(bars.close.ffill(), session) if session in bars.sessions else {}
    if not closes:
        raise ValueError(f"cleaned_ohlcv has no bars for {session} (the as_of of allocation {version}); "
                         "materialise cleaned_ohlcv for that session first")
    if isinstance(broker, PaperBroker):  # shorts pay their borrow at the session's close
        broker.charge_borrow(session, closes, costs.borrow_bps)
    account = broker.account()
    equity = account.equity(closes)
    previous = L.record_mark(ledger, session, equity)
    daily_return = None if previous is None else equity / previous - 1.0

    orders, dust = generate_orders(allocation, account, closes, session, min_notional=min_notional,
                                   source=str(allocation_path(data_dir, version)))
    symbols = sorted({o.symbol for o in orders} | set(account.positions))
    returns = pd.DataFrame()
    if symbols:  # nothing to trade or hold: no history to read
        adjusted = read_adjusted(store, start=history_start, end=session, symbols=symbols, as_of=session)
        returns = adjusted.pivot(index="date", columns="symbol", values="adj_close").pct_change(fill_method=None)
    decision = check_orders(orders, account, closes, limits, daily_return=daily_return, returns=returns,
                            can_short=broker.can_short, broker_name=f"{type(broker).__name__} account")
    with ledger.begin() as conn:
        for order, reason in decision.rejected:
            L.audit(conn, "rejected", order_id=order.order_id, allocation_version=version, symbol=order.symbol,
                    detail={"reason": reason, "side": order.side, "qty": order.qty})
        for d in dust:
            L.audit(conn, "dust_skipped", allocation_version=version, symbol=d.symbol,
                    detail={"qty": d.qty, "notional": d.notional, "min_notional": min_notional})
    results = broker.submit(decision.accepted)

    checks = monitor_fills(fills, bars.keyed(bars.open), threshold_bps=divergence_bps, costs=costs,
                           adv=bars.keyed(bars.adv))
    report = ExecutionReport(
        version, session, equity, daily_return, fills=fills,
        submitted=[r.order_id for r in results if r.status == "submitted"],
        duplicates=[r.order_id for r in results if r.status == "duplicate"],
        rejected={o.symbol: reason for o, reason in decision.rejected}, dust=dust, cancelled=cancelled,
        checks=checks,
    )
    with ledger.begin() as conn:
        for check in report.divergent:
            L.audit(conn, "divergence", order_id=check.order_id, symbol=check.symbol, allocation_version=version,
                    detail={"fill": check.fill_price, "expected": check.expected_price,
                            "bps": check.divergence_bps, "threshold_bps": divergence_bps})
        L.audit(conn, "run", allocation_version=version, detail=report.summary())
    return report
