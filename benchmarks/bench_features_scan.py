"""Features and scan for 1000 synthetic symbols x 5 years, then one new session.

Builds raw -> validated -> cleaned in a temporary store with the engine (setup, not timed in
the figures), then times the feature stage and the scanner stage (on a 2-worker LocalCluster)
over the whole range: ``--repeats`` fresh backfills (no output files, empty file cache, as a
first backfill in a new run), whose median is the figure, then one re-run on unchanged inputs.
Last, both stages for the next single session. Prints figures only.

    .venv/bin/python benchmarks/bench_features_scan.py [--symbols 1000 --start 2020-01-02 --end 2024-12-31 --repeats 3]"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alphatwin_pipelines.calendar import sessions_between  # noqa: E402
from alphatwin_pipelines.ingest import ingest  # noqa: E402
from alphatwin_pipelines.profiling import measure  # noqa: E402
from alphatwin_pipelines.scanner.dask_runner import connect  # noqa: E402
from alphatwin_pipelines.sources.synthetic import SyntheticSource  # noqa: E402
from alphatwin_pipelines.stages.cleaning import build_events, clean_sessions  # noqa: E402
from alphatwin_pipelines.stages.features import ROW_BUDGET, feature_sessions  # noqa: E402
from alphatwin_pipelines.stages.quality import validate_sessions  # noqa: E402
from alphatwin_pipelines.stages.scanner import OUTPUT_TABLES, scan_sessions  # noqa: E402
from alphatwin_pipelines.tables import FEATURES as FEATURE_TABLE  # noqa: E402
from alphatwin_pipelines.storage import FILE_CACHE, WRITE_THREADS, TableStore  # noqa: E402
from tests.fixtures.research import build_cleaned  # noqa: E402


def timed(label: str, fn):
    """Wall time, this process's CPU time (the Dask workers' is not included; "sys" is the
    kernel's share, mostly creating files) and peak RSS."""
    before = os.times()
    with measure() as cost:
        out = fn()
    after = os.times()
    user, system = after.user - before.user, after.system - before.system
    print(f"  {label:<34} {cost.duration_s:7.2f} s   cpu {user + system:6.2f} s (sys {system:5.2f})   "
          f"peak RSS {cost.peak_rss_mb:6.0f} MiB")
    return out, cost


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--start", default="2020-01-02")
    parser.add_argument("--end", default="2024-12-31")
    parser.add_argument("--repeats", type=int, default=3, help="fresh backfill rounds; the median is the figure")
    args = parser.parse_args()
    sessions = sessions_between(args.start, args.end)
    next_session = sessions_between(sessions[-1] + __import__("pandas").Timedelta(days=1), "2099-01-01")[:1]
    source = SyntheticSource(n_symbols=args.symbols)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"features: one pass per block of <= {ROW_BUDGET:,} bar rows (lookback included); "
          f"writes on {WRITE_THREADS} threads")
    with tempfile.TemporaryDirectory() as tmp:
        store = TableStore(tmp)
        t0 = time.perf_counter()
        build_cleaned(store, source, sessions)
        print(f"setup (raw, validated, cleaned for {len(sessions)} sessions): {time.perf_counter() - t0:.1f} s")
        with connect(n_workers=2) as client:
            print(f"backfill: {args.symbols} symbols x {len(sessions)} sessions; each round starts with no "
                  f"feature or scanner files and an empty file cache, as a first backfill in a new run does")
            totals, peak = [], 0.0
            for round_ in range(1, args.repeats + 2):
                rerun = round_ > args.repeats
                if not rerun:
                    for table in (FEATURE_TABLE, *OUTPUT_TABLES):
                        shutil.rmtree(store.table_dir(table), ignore_errors=True)
                FILE_CACHE.clear()
                print("re-run on unchanged inputs (files already hold the same bytes)" if rerun else f"round {round_}")
                _, f_cost = timed("features", lambda: feature_sessions(store, sessions))
                result, s_cost = timed("scan (2 Dask workers)", lambda: scan_sessions(store, sessions, client=client))
                n_signals, hits = len(result.signals), result.summary["hits_per_family"]
                del result  # a materialisation's frames do not outlive its step
                total = f_cost.duration_s + s_cost.duration_s
                print(f"  {'features + scan':<34} {total:7.2f} s")
                if not rerun:
                    totals.append(total)
                    peak = max(peak, f_cost.peak_rss_mb, s_cost.peak_rss_mb)
            print(f"features + scan, median of {len(totals)} fresh backfills: {statistics.median(totals):.2f} s "
                  f"(target <= 20 s); rounds {' '.join(f'{t:.2f}' for t in totals)}; peak RSS {peak:.0f} MiB "
                  f"(target <= 2048)")
            print(f"  signals: {n_signals:,}; hits per family {hits}")
            build_new = lambda: (ingest(source, store, source.universe()["symbol"].tolist(), next_session),  # noqa: E731
                                 validate_sessions(store, next_session), build_events(store, next_session),
                                 clean_sessions(store, next_session))
            build_new()
            FILE_CACHE.clear()
            print(f"one new session ({next_session[0]:%Y-%m-%d})")
            _, f1 = timed("features", lambda: feature_sessions(store, next_session))
            _, s1 = timed("scan (2 Dask workers)", lambda: scan_sessions(store, next_session, client=client))
            print(f"  {'features + scan':<34} {f1.duration_s + s1.duration_s:7.2f} s   (target <= 5 s)")
            print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
