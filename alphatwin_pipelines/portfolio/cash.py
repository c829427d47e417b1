"""The allocation when no strategy passed validation: the whole book in cash, and why.

A week the market offers nothing is a decision, not a failure. The allocation is one ``cash`` row
(weight 1, no strategy or symbol rows), so execution closes every position instead of holding last
week's strategies, and the version and decision session are recorded like any other allocation's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from alphatwin_pipelines.portfolio.allocate import ALLOCATION_SCHEMA, AllocationPolicy, allocation_arrow
from alphatwin_pipelines.portfolio.regime import RegimeCheck
from alphatwin_pipelines.tables import VALIDATION

CASH = "cash"  # the method, kind and name of a cash allocation's one row


@dataclass(frozen=True)
class CashAllocation:
    version: str
    as_of: pd.Timestamp  # the decision session: the newest scanner partition validation used
    reason: str  # why nothing passed: the most common failed gates
    reported: int  # strategies in validation_reports
    regime: RegimeCheck
    expected_return: float = 0.0
    expected_volatility: float = 0.0
    exposure_scale: float = 0.0  # nothing of the book is invested

    def frame(self) -> pd.DataFrame:
        row = {"allocation_version": self.version, "as_of": self.as_of, "method": CASH, "kind": CASH, "name": CASH,
               "weight": 1.0, "sector": None, "risk_contribution": 0.0, "spec_hashes": "[]",
               "scanner_partition": f"{self.as_of:%Y-%m-%d}", "cluster": None,
               "expected_return": self.expected_return, "expected_volatility": self.expected_volatility,
               "exposure_scale": self.exposure_scale}
        return pd.DataFrame([row])[ALLOCATION_SCHEMA.names]

    def arrow(self) -> pa.Table:
        return allocation_arrow(self.frame())


def why_none_passed(reports: pd.DataFrame) -> str:
    """The most common failed gates over ``reports`` (``validation_reports`` rows: strategy_id, reasons)."""
    gates = reports["reasons"].fillna("").astype(str).str.split("; ").explode()
    common = gates[gates.str.strip() != ""].value_counts().head(3)
    why = ", ".join(f"{reason} ({count})" for reason, count in common.items()) or "no strategies were reported"
    return (f"none of the {len(reports)} strategies in {VALIDATION} passed validation, so the book holds cash "
            f"(most common reasons: {why}); optimise more strategies or revisit the validation thresholds")


def cash_allocation(reports: pd.DataFrame, policy: AllocationPolicy = AllocationPolicy()) -> CashAllocation:
    """All cash, dated at the newest ``scanner_partition`` of ``reports``, versioned by its content."""
    partitions = reports["scanner_partition"].dropna().astype(str)
    if partitions.empty:
        raise ValueError(f"{VALIDATION} holds no scanner_partition (rows: {len(reports)}), so a cash allocation has no "
                         "decision session: materialise optimised_strategies and validation_reports first")
    as_of = pd.Timestamp(partitions.max())
    reason = why_none_passed(reports)
    version = hashlib.sha256(json.dumps({"kind": CASH, "as_of": f"{as_of:%Y-%m-%d}", "reason": reason},
                                        sort_keys=True).encode()).hexdigest()[:20]
    regime = RegimeCheck(window=policy.regime_window, threshold=policy.regime_threshold, recent_start=None,
                         recent_end=None, previous_start=None, previous_end=None, mean_abs_change=float("nan"),
                         max_abs_change=float("nan"), frobenius_distance=float("nan"), rebalance_suggested=False,
                         reason=f"cash: no strategy to rebalance; {reason}")
    return CashAllocation(version, as_of, reason, len(reports), regime)
