"""Paper execution of one allocation version, launched by ``paper_execution_sensor``.

The run acts on the immutable file ``portfolio_allocations/<allocation_version>.parquet``, so a
newer allocation landing mid-run changes nothing. Order ids derive from the version, hence a
re-run (retry, duplicate sensor request) skips orders already in the ledger instead of trading twice.
"""

import dagster as dg
from pydantic import model_validator

from alphatwin_pipelines.execution.safeguards import Limits
from assets.config import config_from_dataclass, dataclass_from_config
from assets.resources import BrokerResource, StorageResource

EXECUTE_OP = "execute_allocation"


class PaperExecutionConfig(config_from_dataclass(Limits)):
    """Which allocation to trade, and the pre-trade limits (every ``Limits`` field; never above the
    hard-coded bounds)."""

    allocation_version: str
    min_order_notional: float = 100.0
    divergence_bps: float = 25.0

    @model_validator(mode="after")
    def _within_hard_bounds(self):
        self.limits()
        return self

    def limits(self) -> Limits:
        return dataclass_from_config(Limits, self)


@dg.op(name=EXECUTE_OP, description="Settle, size, check and submit the orders of one allocation version.")
def execute_allocation_op(context: dg.OpExecutionContext, config: PaperExecutionConfig,
                          storage: StorageResource, broker: BrokerResource) -> dg.Output[dict]:
    from alphatwin_pipelines.execution import execute_allocation

    trading, ledger = broker.build(storage.path())
    try:
        report = execute_allocation(storage.path(), trading, ledger, config.allocation_version,
                                    limits=config.limits(), min_notional=config.min_order_notional,
                                    divergence_bps=config.divergence_bps)
    finally:
        ledger.dispose()
    for symbol, reason in sorted(report.rejected.items()):
        context.log.warning(f"rejected {symbol}: {reason}")
    for check in report.divergent:
        context.log.warning(f"fill of {check.symbol} diverged {check.divergence_bps:.1f} bps from the backtest's")
    summary = report.summary()
    return dg.Output(summary, metadata={
        **summary,
        "rejected_reasons": dg.MetadataValue.json(report.rejected),
        "submitted_order_ids": dg.MetadataValue.json(report.submitted),
        "broker": broker.kind,
    })


@dg.job(description="Trade one portfolio_allocations version on the paper account (or Alpaca paper).")
def paper_execution_job():
    execute_allocation_op()
