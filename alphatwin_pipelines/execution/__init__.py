"""Paper (and Alpaca paper) execution of allocation versions, with pre-trade safeguards.

Public API::

    PaperBroker(url)                   # SQL ledger; settle(session, opens) fills at the next open
    AlpacaBroker.from_keys(key, secret, ledger)  # alpaca-py TradingClient(paper=True); keys from env via BrokerResource
    generate_orders(allocation, account, closes, session) -> (orders, dust)
    check_orders(orders, account, closes, Limits(...)) -> Decision(accepted, rejected with reasons)
    monitor_fills(fills, opens, threshold_bps=...) -> [FillCheck]
    execute_allocation(data_dir, broker, ledger, allocation_version) -> ExecutionReport

``AlpacaBroker`` is imported lazily (alpaca-py is heavy): ``from alphatwin_pipelines.execution.alpaca import AlpacaBroker``.
"""

from __future__ import annotations

from alphatwin_pipelines.execution.ledger import default_ledger_url, open_ledger, read_audit
from alphatwin_pipelines.execution.model import AccountState, Broker, Fill, Order, SubmitResult, order_id_for
from alphatwin_pipelines.execution.monitor import FillCheck, monitor_fills
from alphatwin_pipelines.execution.orders import generate_orders
from alphatwin_pipelines.execution.paper import PaperBroker
from alphatwin_pipelines.execution.run import ExecutionReport, execute_allocation, read_allocation
from alphatwin_pipelines.execution.safeguards import HARD_BOUNDS, Decision, LimitConfigError, Limits, check_orders

__all__ = [
    "HARD_BOUNDS", "AccountState", "Broker", "Decision", "ExecutionReport", "Fill", "FillCheck", "LimitConfigError",
    "Limits", "Order", "PaperBroker", "SubmitResult", "check_orders", "default_ledger_url", "execute_allocation",
    "generate_orders", "monitor_fills", "open_ledger", "order_id_for", "read_allocation", "read_audit",
]
