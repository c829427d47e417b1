"""The three gates a strategy must pass before allocation may use it, with the reason when it fails.

Defaults, and why:

* ``min_dsr = 0.95``: the Deflated Sharpe Ratio is the probability that the in-sample Sharpe
  ratio beats the best one N lucky trials would show; 0.95 is the usual 5 % false-positive
  level. Lower it only knowingly: each step down admits more strategies that are pure selection.
* ``max_pbo = 0.5``: a PBO above one half means the study's in-sample winner ranked below the
  median out of sample in most CSCV splits, i.e. choosing by backtest did worse than chance.
* ``min_oos_sharpe = 0.5``: the walk-forward return stream must earn at least half a unit of
  return per unit of risk after costs; below 0.5 ``explain`` calls a Sharpe weak, and a margin
  over zero absorbs the error of the cost model.

A gate whose statistic could not be measured (too few trials or sessions) fails: absence of
evidence is not evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DSR_GATE = "dsr"
PBO_GATE = "pbo"
OOS_SHARPE_GATE = "oos_sharpe"
GATES = (DSR_GATE, PBO_GATE, OOS_SHARPE_GATE)


@dataclass(frozen=True)
class GateThresholds:
    min_dsr: float = 0.95
    max_pbo: float = 0.5
    min_oos_sharpe: float = 0.5

    def __post_init__(self):
        for name in ("min_dsr", "max_pbo"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability: it must lie in [0, 1], got {value}")
        if not math.isfinite(self.min_oos_sharpe):
            raise ValueError(f"min_oos_sharpe must be finite, got {self.min_oos_sharpe}")


def gate_failures(dsr: float, pbo: float, oos_sharpe: float, n_trials: int,
                  thresholds: GateThresholds) -> dict[str, str]:
    """``{gate: reason}`` for every gate the strategy fails; empty when it passes all three."""
    out: dict[str, str] = {}
    if not math.isfinite(dsr):
        out[DSR_GATE] = "DSR not measurable (no trial Sharpe ratios or too few sessions)"
    elif dsr < thresholds.min_dsr:
        out[DSR_GATE] = (f"DSR {dsr:.2f} < {thresholds.min_dsr:.2f}: the in-sample Sharpe is not clearly "
                         f"above what the best of {n_trials} trials would show by luck")
    if not math.isfinite(pbo):
        out[PBO_GATE] = "PBO not measurable (fewer than 2 distinct trials or too few sessions)"
    elif pbo > thresholds.max_pbo:
        out[PBO_GATE] = (f"PBO {pbo:.2f} > {thresholds.max_pbo:.2f}: the in-sample best trial was at or "
                         "below the median out of sample in most splits")
    if not math.isfinite(oos_sharpe):
        out[OOS_SHARPE_GATE] = "out-of-sample Sharpe not measurable (flat or too short walk-forward)"
    elif oos_sharpe < thresholds.min_oos_sharpe:
        out[OOS_SHARPE_GATE] = (f"out-of-sample Sharpe {oos_sharpe:.2f} < {thresholds.min_oos_sharpe:.2f} "
                                "after costs in the walk-forward")
    return out
