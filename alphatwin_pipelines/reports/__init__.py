"""Validation reports: how an optimised strategy does out of sample, after counting what was tried.

No Dagster here. Public API::

    v = validate_strategy(row, trials, market, benchmarks, labels, ValidationSettings())
    v.oos_returns, v.oos_metrics, v.dsr, v.pbo, v.failures, v.passed
    render_report(v, row) -> self-contained HTML
    regime_labels(market); benchmark_returns(market, universe, costs); gate_failures(...)

:mod:`.evaluate` holds the DSR / PBO / cost / benchmark logic, :mod:`.reoptimise` the walk-forward
that re-runs the optimiser in every train window (purge, embargo, seeds, efficiency, parameter
stability; :func:`.reoptimise.optimise_window` is its one call into the optimiser),
:mod:`.portfolio` the equal-weight book and benchmarks,
:mod:`.regimes` the point-in-time regime labels, :mod:`.gates` the thresholds and their
defaults, :mod:`.html` the page. The stage that runs it over the stored tables is
:mod:`alphatwin_pipelines.stages.validation`.
"""

from __future__ import annotations

from alphatwin_pipelines.reports.evaluate import StrategyValidation, ValidationSettings, validate_strategy
from alphatwin_pipelines.reports.gates import GATES, GateThresholds, gate_failures
from alphatwin_pipelines.reports.html import render_report
from alphatwin_pipelines.reports.portfolio import benchmark_returns, scale_costs
from alphatwin_pipelines.reports.regimes import regime_labels

__all__ = [
    "GATES", "GateThresholds", "StrategyValidation", "ValidationSettings", "benchmark_returns", "gate_failures",
    "regime_labels", "render_report", "scale_costs", "validate_strategy",
]
