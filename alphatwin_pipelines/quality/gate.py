"""The session gate: which sessions are trusted enough to flow past validation.

Quarantine already removes every bad row; the gate asks a different question: is the
*session as a whole* suspect, because more of its rows were rejected than bad luck explains
(a truncated or re-sent file, a wrong trading day, a unit change at the provider)? Such a
session is held back: downstream stages publish nothing for it until it is fixed and
re-validated, or explicitly released.

Why a binomial bound and not a fixed pass rate. A real feed has a small background rate
``p`` of independent bad rows (bad prints, glitches per symbol), so the number of rejected
rows of a session of ``n`` rows is about Binomial(n, p). A fixed share (99 %) confuses the
granularity of small universes with failure: at 20 symbols one rejected row is already 5 %,
at 95 symbols 1.05 %, so a watchlist fails the gate on ordinary noise, and a ten-year
single-run backfill always contains such a session. ``max(k_min, rate * n)`` fixes the small
end by hand but its two knobs have no meaning one can check. The binomial bound holds a
session only when its count is improbable under the expected rate: ``allowed(n)`` is the
smallest ``k`` with ``P(X > k) <= false_hold_rate``. Both knobs are measurable: ``p`` is
the rate seen on real data, and ``false_hold_rate`` is how often a healthy session is held
(per session; 1e-4 is about one in forty years of sessions). It scales from 20 symbols to
3000 without a switch, and a systemic failure (a large share rejected) is held at any size.
The default rate (0.5 %) sits far above what the curated S&P 500 set shows, leaving room for
noisier free feeds and for the synthetic market's injected defects.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from alphatwin_pipelines.partition_keys import key_sessions
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import GATE

PASSED, HELD, RELEASED = "passed", "held", "released"
GATE_COLUMNS = ("session", "rows_in", "quarantined", "allowed", "status")


@dataclass(frozen=True)
class GatePolicy:
    """Expected share of bad rows in a healthy session, and the accepted chance of holding one."""

    expected_defect_rate: float = 0.005
    false_hold_rate: float = 1e-4

    def __post_init__(self):
        for name in ("expected_defect_rate", "false_hold_rate"):
            value = getattr(self, name)
            if not 0 < value < 1:
                raise ValueError(f"gate setting {name} must be strictly between 0 and 1, got {value}")


def allowed_defects(rows: Iterable[int] | int, policy: GatePolicy = GatePolicy()) -> np.ndarray:
    """Most quarantined rows a healthy session of ``rows`` rows shows, at the policy's false-hold rate."""
    from scipy.stats import binom  # slow to import: only when a gate is computed, not when the code location loads

    n = np.atleast_1d(np.asarray(rows, dtype=np.int64))
    # isf(q) is the smallest k with P(X > k) <= q.
    return binom.isf(policy.false_hold_rate, n, policy.expected_defect_rate).astype(np.int64)


def gate_sessions(counts: pd.DataFrame, policy: GatePolicy = GatePolicy(), released: Iterable = ()) -> pd.DataFrame:
    """The gate's decision per session.

    ``counts`` has ``session``, ``rows_in`` and ``quarantined``; ``released`` lists sessions a
    person has inspected and accepts as they are. Returns ``GATE_COLUMNS``: ``status`` is
    ``held`` when ``quarantined > allowed``, ``released`` when such a session is in
    ``released``, else ``passed``.
    """
    sessions = pd.to_datetime(counts["session"])
    try:
        released = key_sessions(released)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"release_sessions must be session dates as YYYY-MM-DD, got {list(released)!r}: {exc}") from exc
    allowed = allowed_defects(counts["rows_in"].to_numpy(), policy) if len(counts) else np.empty(0, np.int64)
    over = counts["quarantined"].to_numpy() > allowed
    freed = sessions.isin(released).to_numpy()
    status = np.where(over & freed, RELEASED, np.where(over, HELD, PASSED))
    return pd.DataFrame({
        "session": sessions.astype("datetime64[ns]").to_numpy(),
        "rows_in": counts["rows_in"].astype("int64").to_numpy(),
        "quarantined": counts["quarantined"].astype("int64").to_numpy(),
        "allowed": allowed,
        "status": pd.array(status, dtype="string"),
    })


def held_sessions(store: TableStore, start, end) -> pd.DatetimeIndex:
    """Stored sessions in [``start``, ``end``] the gate holds back (none where no gate was stored)."""
    if not store.table_dir(GATE).is_dir():
        return pd.DatetimeIndex([], dtype="datetime64[ns]")
    gate = store.read_partitions(GATE, start, end, columns=["session", "status"])
    if gate.empty:
        return pd.DatetimeIndex([], dtype="datetime64[ns]")
    return pd.DatetimeIndex(gate.loc[gate["status"] == HELD, "session"]).astype("datetime64[ns]")


__all__ = ["GATE_COLUMNS", "GatePolicy", "HELD", "PASSED", "RELEASED", "allowed_defects", "gate_sessions", "held_sessions"]
