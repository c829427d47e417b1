"""Universe scanner: trend, mean-reversion, momentum and breakout signals plus cross-asset context.

``scan(cleaned, universe, sessions)`` runs in-process; ``dask_runner.run_scan(..., client)``
maps the per-symbol part over symbol shards on a Dask cluster with identical results.

Signals frame columns: ``date, symbol, sector, family, signal, direction, score,
rank_family, rank_overall, evidence`` (evidence = compact JSON of the values behind the score).
"""

from __future__ import annotations

from alphatwin_pipelines.scanner.scan import SIGNAL_COLUMNS, ScanResult, make_shards, prepare, scan, scan_shard
from alphatwin_pipelines.scanner.signals import FAMILIES, SIGNALS, ScanConfig

__all__ = [
    "FAMILIES",
    "SIGNALS",
    "SIGNAL_COLUMNS",
    "ScanConfig",
    "ScanResult",
    "make_shards",
    "prepare",
    "run_scan",
    "scan",
    "scan_shard",
]


def run_scan(*args, **kwargs) -> ScanResult:
    """``dask_runner.run_scan`` (imported lazily so the package does not import distributed)."""
    from alphatwin_pipelines.scanner.dask_runner import run_scan as _run_scan

    return _run_scan(*args, **kwargs)
