"""Session partitions: what the Dagster calls the UI and daemon make cost, workaround against the natural definition.

    .venv/bin/python benchmarks/bench_partitions.py [--start 2000-01-03] [--repeats 3]

``nyse_sessions`` works around Dagster issue 33551 with two cron ticks per weekday (see
assets/partitions.py). Dagster iterates such a cron with croniter instead of its daily fast path, so
calls that walk the whole history cost more. The peer, timed in the same run, is the natural
definition the workaround replaces (midnight windows, ``end_offset=1``, the same holidays excluded),
which is wrong on holidays. Dagster's lru caches on the class are cleared before each call.
Figures are printed, nothing is asserted: the machine is shared (load average printed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import dagster as dg  # noqa: E402
from dagster._core.definitions.partitions.context import (  # noqa: E402
    PartitionLoadingContext, TemporalContext, partition_loading_context)

from alphatwin_pipelines.calendar import (  # noqa: E402
    DEFAULT_PARTITION_START, MARKET_TIMEZONE, last_session, non_session_weekdays)
from assets.partitions import session_partitions  # noqa: E402


def natural(start: str) -> dg.TimeWindowPartitionsDefinition:
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule="0 0 * * 1-5", fmt="%Y-%m-%d", start=start, timezone=MARKET_TIMEZONE, end_offset=1,
        exclusions=non_session_weekdays(start, last_session()))


NOW = dt.datetime(2026, 12, 4, 12)
CALLS = {
    "get_partition_keys (the partitions list)": lambda p: p.get_partition_keys(),
    "get_num_partitions": lambda p: p.get_num_partitions(),
    "a page of 100 keys, newest first": lambda p: p.get_paginated_partition_keys(
        context=PartitionLoadingContext(temporal_context=TemporalContext(effective_dt=NOW, last_event_id=None),
                                        dynamic_partitions_store=None),
        limit=100, ascending=False),
    "get_last_partition_key": lambda p: p.get_last_partition_key(),
    "has_partition_key (a run's validation)": lambda p: p.has_partition_key("2024-07-03"),
    "a one-year key range (a year's backfill)": lambda p: p.get_partition_keys_in_range(
        dg.PartitionKeyRange("2024-01-02", "2024-12-31")),
}


def clear_caches() -> None:
    for cls in dg.TimeWindowPartitionsDefinition.__mro__:  # @record wraps the class that holds the methods
        for attribute in vars(cls).values():
            if hasattr(attribute, "cache_clear"):
                attribute.cache_clear()


def best_of(make, call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        definition = make()
        clear_caches()
        with partition_loading_context(NOW):
            started = time.perf_counter()
            call(definition)
            times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--start", default=DEFAULT_PARTITION_START)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"partitions from {args.start}, best of {args.repeats}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'call':45} {'workaround':>11} {'natural':>9} {'ratio':>6}")
    for name, call in CALLS.items():
        ours = best_of(lambda: session_partitions(args.start), call, args.repeats)
        peer = best_of(lambda: natural(args.start), call, args.repeats)
        print(f"{name:45} {ours * 1000:9.1f}ms {peer * 1000:7.1f}ms {ours / peer:5.1f}x")


if __name__ == "__main__":
    main()
