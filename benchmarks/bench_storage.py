"""What each piece of the batched writer and the file cache buys, A/B in one run.

Builds cleaned bars for ``--symbols`` synthetic symbols over ``--start``..``--end`` (setup, not
timed), then runs the feature stage (the heaviest writer: one file per session) with the
writer's pieces switched off one at a time, the variants interleaved in every round so that the
machine's drift hits them alike:

- ``current``: the writer as shipped;
- ``inline``: no writer threads (every file encoded and written on the producer thread);
- ``unbounded``: no back-pressure (the producer never waits for the writer threads);
- ``no_compare``: files are rewritten even when they already hold the new bytes;
- ``slow_disk`` and ``slow_disk_unbounded``: every write waits ``SLOW_WRITE_S`` more on its
  writer thread, as on a slow or network disk, with and without back-pressure (peak RSS).

Each variant runs a fresh backfill (no feature files) and a re-run on unchanged inputs. Then the
file cache: the scanner's read of the cleaned bars right after the feature stage read them, with
the cache kept (as in a run) against cleared, and cleared with the files decoded one by one
instead of in one multi-threaded scan. Prints median and range over ``--repeats`` rounds.

    .venv/bin/python benchmarks/bench_storage.py [--symbols 500 --start 2020-01-02 --end 2024-12-31 --repeats 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alphatwin_pipelines import parquet_files, storage  # noqa: E402
from alphatwin_pipelines.calendar import previous_sessions, sessions_between  # noqa: E402
from alphatwin_pipelines.profiling import measure  # noqa: E402
from alphatwin_pipelines.sources.synthetic import SyntheticSource  # noqa: E402
from alphatwin_pipelines.stages.features import feature_sessions  # noqa: E402
from alphatwin_pipelines.stages.scanner import LOOKBACK_SESSIONS  # noqa: E402
from alphatwin_pipelines.tables import FEATURES, read_adjusted  # noqa: E402
from tests.fixtures.research import build_cleaned  # noqa: E402


class _Inline:
    """A stand-in for the writer pool that runs each write on the caller's thread."""

    def __init__(self, *args, **kwargs):
        pass

    def submit(self, fn, *args):
        future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(exc)
        return future

    def shutdown(self, *args, **kwargs):
        pass


def _home(name: str):
    """The module whose global ``name`` the writer reads."""
    return parquet_files if hasattr(parquet_files, name) else storage


@contextmanager
def _patched(**attributes):
    saved = {name: getattr(_home(name), name) for name in attributes}
    for name, value in attributes.items():
        setattr(_home(name), name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(_home(name), name, value)


VARIANTS = {
    "current": {},
    "inline": {"ThreadPoolExecutor": _Inline},
    "unbounded": {"_MAX_QUEUED": 10**9},
    "no_compare": {"_holds": lambda path, payload, found: False},
}
#: Extra seconds per written file in the ``slow_disk`` variants.
SLOW_WRITE_S = 0.02


def _slow_holds(path, payload, found, _holds=parquet_files._holds):
    time.sleep(SLOW_WRITE_S)
    return _holds(path, payload, found)


VARIANTS["slow_disk"] = {"_holds": _slow_holds}
VARIANTS["slow_disk_unbounded"] = {"_holds": _slow_holds, "_MAX_QUEUED": 10**9}


def _decode_one_by_one(paths, columns):
    import pyarrow.parquet as pq

    return [pq.read_table(p, columns=list(columns) if columns is not None else None) for p in paths]


READS = {"cache kept": None, "cache cleared": None, "cleared, per file": _decode_one_by_one}


def _run(fn) -> tuple[float, float, float, float]:
    """Wall seconds, CPU seconds (user + kernel), kernel CPU seconds and peak RSS (MiB) of ``fn()``."""
    before = os.times()
    with measure() as cost:
        fn()
    after = os.times()
    kernel = after.system - before.system
    return cost.duration_s, after.user - before.user + kernel, kernel, cost.peak_rss_mb


def _summary(values: list[float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--start", default="2020-01-02")
    parser.add_argument("--end", default="2024-12-31")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--variants", nargs="*", default=["current", "inline", "unbounded", "no_compare"],
                        help=f"writer variants among {', '.join(VARIANTS)} (none: reads only)")
    args = parser.parse_args()
    sessions = sessions_between(args.start, args.end)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        store = storage.TableStore(tmp)
        t0 = time.perf_counter()
        build_cleaned(store, SyntheticSource(n_symbols=args.symbols), sessions)
        print(f"setup: {args.symbols} symbols x {len(sessions)} sessions in {time.perf_counter() - t0:.1f} s")
        results: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
        before = previous_sessions(sessions[0], LOOKBACK_SESSIONS)
        scanner_read = lambda: read_adjusted(store, start=before[0], end=sessions[-1], as_of=sessions[-1],  # noqa: E731
                                             columns=())
        names = list(args.variants)
        for round_ in range(args.repeats):
            order = names[round_ % len(names):] + names[:round_ % len(names)] if names else []
            for name in order:
                with _patched(**VARIANTS[name]):
                    shutil.rmtree(store.table_dir(FEATURES), ignore_errors=True)
                    storage.FILE_CACHE.clear()
                    results.setdefault((name, "fresh"), []).append(_run(lambda: feature_sessions(store, sessions)))
                    results.setdefault((name, "re-run"), []).append(_run(lambda: feature_sessions(store, sessions)))
            reads = list(READS)
            for name in reads[round_ % len(reads):] + reads[:round_ % len(reads)]:
                storage.FILE_CACHE.clear()
                read_adjusted(store, start=before[0], end=sessions[-1], as_of=sessions[-1], columns=["volume"])
                if name != "cache kept":
                    storage.FILE_CACHE.clear()
                decode = READS[name] or storage.FileCache._decode
                original, storage.FileCache._decode = storage.FileCache._decode, staticmethod(decode)
                try:
                    results.setdefault((name, "scanner read"), []).append(_run(scanner_read))
                finally:
                    storage.FileCache._decode = staticmethod(original)
            print(f"round {round_ + 1} done, load average {os.getloadavg()[0]:.2f}", flush=True)
        print(f"\n{'variant':<19} {'work':<13} {'wall s, median (range)':<24} {'CPU s':<20} {'kernel CPU s':<20} "
              f"peak RSS MiB")
        for (name, work), runs in results.items():
            walls, cpu, kernel, rss = zip(*runs)
            print(f"{name:<19} {work:<13} {_summary(walls):<24} {_summary(cpu):<20} {_summary(kernel):<20} "
                  f"{_summary(rss, '{:.0f}')}")
        for (name, work), runs in results.items():  # rounds are interleaved: compare round by round
            if name != names[0] and (names[0], work) in results:
                ratios = [run[0] / base[0] for run, base in zip(runs, results[(names[0], work)])]
                print(f"wall {name} / {names[0]}, {work}, per round: {' '.join(f'{r:.2f}' for r in ratios)}"
                      f" (median {statistics.median(ratios):.2f})")
        kept, cleared = results.get(("cache kept", "scanner read")), results.get(("cache cleared", "scanner read"))
        if kept and cleared:
            ratios = [c[0] / k[0] for k, c in zip(kept, cleared)]
            print(f"scanner read, cleared / kept, per round: {' '.join(f'{r:.1f}' for r in ratios)}")
        print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
