"""Shared by the ingestion-asset tests: the partitions they materialise and readers of what a
``raw_ohlcv`` run reported and wrote.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import dagster as dg
from dagster import DagsterEventType

DAY = "2024-03-15"
RANGE = ("2024-03-11", "2024-03-22")


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def partition_file(data_dir: Path, key: str) -> Path:
    return Path(data_dir) / "raw_ohlcv" / f"{key}.parquet"


def partition_files(data_dir: Path) -> list[str]:
    folder = Path(data_dir) / "raw_ohlcv"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def raw_materializations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetMaterialization]:
    mats = result.asset_materializations_for_node("raw_ohlcv")
    by_key = {m.partition: m for m in mats}
    assert len(by_key) == len(mats), "one materialization per partition"
    return by_key


def value(metadata, key):
    """The plain value of a metadata entry (int, float, str, markdown text or path)."""
    entry = metadata[key]
    return getattr(entry, "value", entry)


def md(metadata, key) -> str:
    return metadata[key].md_str


def events_of(result, event_type: DagsterEventType):
    return [e for e in result.all_events if e.event_type == event_type]

