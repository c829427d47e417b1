"""The four gates a strategy must pass before allocation may use it, with the reason when it fails.

Defaults, and why:

* ``min_dsr = 0.95``: the Deflated Sharpe Ratio is the probability that the in-sample Sharpe
  ratio beats the best one N lucky trials would show; 0.95 is the usual 5 % false-positive
  level. Lower it only knowingly: each step down admits more strategies that are pure selection.
* ``max_pbo = 0.5``: a PBO above one half means the study's in-sample winner ranked below the
  median out of sample in most CSCV splits, i.e. choosing by backtest did worse than chance.
* ``min_oos_sharpe = 0.5``: the walk-forward return stream must earn at least half a unit of
  return per unit of risk after costs; below 0.5 ``explain`` calls a Sharpe weak, and a margin
  over zero absorbs the error of the cost model.
* ``min_information_ratio = 0.0`` (benchmark gate): the walk-forward must beat EVERY benchmark
  its report shows (buy-and-hold of its own symbols, the equal-weight universe, SMA 50/200) over
  the same out-of-sample sessions, by an information ratio of daily log active returns strictly
  above the threshold (``stats.information_ratio``). With log returns, a ratio above 0 means a
  higher compounded return than the benchmark, so a strategy that returned 22 % while
  buy-and-hold of its symbols returned 93 % fails, whatever its own Sharpe. Raise the threshold
  to ask for a margin over the benchmarks.

A gate whose statistic could not be measured (too few trials or sessions) fails: absence of
evidence is not evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DSR_GATE = "dsr"
PBO_GATE = "pbo"
OOS_SHARPE_GATE = "oos_sharpe"
BENCHMARK_GATE = "benchmark"
GATES = (DSR_GATE, PBO_GATE, OOS_SHARPE_GATE, BENCHMARK_GATE)


@dataclass(frozen=True)
class GateThresholds:
    min_dsr: float = 0.95
    max_pbo: float = 0.5
    min_oos_sharpe: float = 0.5
    min_information_ratio: float = 0.0

    def __post_init__(self):
        for name in ("min_dsr", "max_pbo"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability: it must lie in [0, 1], got {value}")
        for name in ("min_oos_sharpe", "min_information_ratio"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)}")


def gate_failures(dsr: float, pbo: float, oos_sharpe: float, n_trials: int,
                  thresholds: GateThresholds, information_ratios: dict[str, float] | None = None) -> dict[str, str]:
    """``{gate: reason}`` for every gate the strategy fails; empty when it passes all four.

    ``information_ratios``: benchmark name -> the walk-forward's information ratio against it;
    ``None`` or empty fails the benchmark gate (nothing shows the strategy beats anything).
    """
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
    beaten = _benchmark_failure(information_ratios or {}, thresholds.min_information_ratio)
    if beaten:
        out[BENCHMARK_GATE] = beaten
    return out


def _benchmark_failure(ratios: dict[str, float], threshold: float) -> str:
    """The benchmark gate's reason (every reason starts with "benchmarks"), or "" when it passes."""
    if not ratios:
        return "benchmarks not measurable: no out-of-sample sessions to compare"
    unmeasured = [name for name, ir in ratios.items() if not math.isfinite(ir)]
    if unmeasured:
        return (f"benchmarks not measurable: the information ratio against {', '.join(unmeasured)} is undefined "
                "(flat or too short walk-forward)")
    behind = [f"{name} {ir:.2f}" for name, ir in ratios.items() if not ir > threshold]
    if behind:
        return (f"benchmarks not beaten: information ratio (daily log active returns) {', '.join(behind)} "
                f"<= {threshold:.2f} over the out-of-sample sessions")
    return ""
