"""Plain-English readings of the numbers from :func:`.metrics.compute_metrics`.

Kept apart from :mod:`.metrics` so that module holds only the arithmetic and stays within the
project's file-size guideline; the wording here changes for readers, the maths there does not.
:func:`explain` is re-exported from :mod:`.metrics`, so ``from ...metrics import explain`` still
works. This module depends only on the metric names, never on how they are computed.
"""

from __future__ import annotations

import math

__all__ = ["explain"]


def _pct(v: float) -> str:
    return f"{v:.1%}" if abs(v) < 0.1 else f"{v:.0%}"


def _sharpe_line(v: float) -> str:
    verdict = ("negative: it lost money for the risk it took" if v < 0 else "below 0.5 is weak"
               if v < 0.5 else "below 1 is modest" if v < 1 else "1 to 2 is good" if v < 2
               else "above 2 is rare in practice: check for overfitting or look-ahead")
    return f"Sharpe {v:.2f}: about {v:.2f} units of return per unit of volatility a year; {verdict}"


_EXPLAIN = {
    "n_obs": lambda v: f"{v:.0f} observations: the more sessions, the more the other numbers mean",
    "total_return": lambda v: f"Total return {_pct(v)}: the gain or loss over the whole period",
    "cagr": lambda v: f"CAGR {_pct(v)}: the steady yearly growth rate giving the same end result",
    "volatility": lambda v: f"Volatility {_pct(v)} a year: the typical size of a year's swings",
    "sharpe": _sharpe_line,
    "sortino": lambda v: f"Sortino {v:.2f}: like Sharpe, but only downside swings count as risk",
    "max_drawdown": lambda v: f"Max drawdown {_pct(v)}: you could lose this much in a bad period",
    "max_drawdown_duration": lambda v: f"The worst drawdown lasted {v:.0f} sessions (about "
    f"{v / 21:.1f} months) from its peak to recovery, or to the end if not recovered",
    "max_drawdown_recovered": lambda v: "The worst drawdown was " + ("fully recovered" if v
                                                                     else "not yet recovered"),
    "win_rate": lambda v: f"Win rate {_pct(v)}: the share of active sessions (or trades) that "
    "made money; read it with the profit factor",
    "profit_factor": lambda v: f"Profit factor {v:.2f}: gains were {v:.2f} times the losses; "
    + ("above 1 is profitable" if v > 1 else "at or below 1, losses ate the gains"),
    "skewness": lambda v: f"Skewness {v:.2f}: " + (
        "rare large losses (a crash-prone profile)" if v < -0.5 else "rare large gains"
        if v > 0.5 else "gains and losses roughly symmetric"),
    "kurtosis": lambda v: f"Kurtosis {v:.1f} (normal = 3): " + (
        "fat tails, extreme days are more common than a bell curve suggests" if v > 4
        else "tails close to normal"),
    "exposure": lambda v: f"Exposure {_pct(v)}: the share of sessions with money in the market",
    "n_trades": lambda v: f"{v:.0f} trades" + (": few trades means little evidence" if v < 30
                                               else ""),
    "avg_holding_period": lambda v: f"Average holding period {v:.1f} sessions per trade",
}


def explain(metrics: dict) -> dict[str, str]:
    """One plain-English line per known metric in ``metrics`` (as from :func:`compute_metrics`)."""
    lines: dict[str, str] = {}
    for key, value in metrics.items():
        if key not in _EXPLAIN:
            continue
        v = float(value)
        name = key.replace("_", " ").capitalize()
        if math.isnan(v):
            lines[key] = (f"{name} not available: too few observations, no variation, or the "
                          "inputs it needs (positions, trades) were not given")
        elif math.isinf(v):
            lines[key] = f"{name} is infinite: there were no losing observations"
        else:
            lines[key] = _EXPLAIN[key](v)
    return lines
