"""Helpers shared by the execution tests: allocation versions in the contract's columns, prices."""

from __future__ import annotations

import hashlib
import json

import pandas as pd

from alphatwin_pipelines.execution.run import allocation_path
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import CLEANED, UNIVERSE


def universe_symbols(data_dir, n: int) -> list[str]:
    return sorted(TableStore(data_dir).read_table(UNIVERSE)["symbol"])[:n]


def bars_at(data_dir, session: str) -> pd.DataFrame:
    frame = TableStore(data_dir).read_partitions(CLEANED, session, session)
    return frame.set_index("symbol")


def write_allocation(data_dir, as_of: str, weights: dict[str, float], scanner_partition: str = "2024-06-27") -> str:
    """Write one immutable allocation version as the portfolio stage would; returns its version."""
    version = hashlib.sha256(json.dumps([as_of, sorted(weights.items())]).encode()).hexdigest()[:20]
    frame = pd.DataFrame({
        "allocation_version": version, "as_of": pd.Timestamp(as_of), "method": "hrp", "kind": "symbol",
        "name": list(weights), "weight": [float(w) for w in weights.values()], "sector": None,
        "risk_contribution": [1 / len(weights)] * len(weights),
        "spec_hashes": json.dumps(["a1b2c3d4e5f60718"]), "scanner_partition": scanner_partition,
    })
    strategy_row = frame.iloc[:1].assign(kind="strategy", name="a1b2c3d4e5f60718", weight=1.0, sector=None)
    path = allocation_path(data_dir, version)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.concat([strategy_row, frame], ignore_index=True).to_parquet(path)
    return version
