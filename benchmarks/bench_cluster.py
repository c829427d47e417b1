"""The feature stage and the Optuna studies on a 2-worker Dask cluster against in process (the peer).

Builds a research data directory with the engine (synthetic market, not timed), then times, in
interleaved rounds: ``feature_sessions`` over the whole range in process and with a client
(symbol shards on the workers), and ``optimise_strategies`` in process and with a client (one task
per study), each study run into a fresh SQLite storage. The cluster is a process-based
``LocalCluster`` (``scanner.dask_runner.local_cluster``), warmed with one run before the rounds; the
tables are checked equal to the in-process ones. Prints figures only.

    .venv/bin/python benchmarks/bench_cluster.py [--symbols 200 --start 2023-01-03 --end 2024-12-31 --repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from alphatwin_pipelines.calendar import sessions_between  # noqa: E402
from alphatwin_pipelines.numba_cache import configure_numba_cache  # noqa: E402
from alphatwin_pipelines.scanner.dask_runner import connect  # noqa: E402
from alphatwin_pipelines.stages.features import feature_sessions  # noqa: E402
from alphatwin_pipelines.stages.optimisation import OptimisationConfig, optimise_strategies  # noqa: E402
from alphatwin_pipelines.storage import TableStore  # noqa: E402
from alphatwin_pipelines.tables import FEATURES  # noqa: E402
from tests.fixtures.research import build_research_data  # noqa: E402

STUDIES = OptimisationConfig(families=("ma_cross", "rsi_reversion", "donchian_breakout", "ts_momentum"), levels=(0, 3),
                             n_trials=20, shortlist_size=20, train_years=1.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--start", default="2023-01-03")
    parser.add_argument("--end", default="2024-12-31")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        configure_numba_cache(Path(tmp))
        t0 = time.perf_counter()
        store = build_research_data(Path(tmp) / "data", n_symbols=args.symbols, start=args.start, end=args.end)
        sessions = sessions_between(args.start, args.end)
        print(f"setup: {args.symbols} symbols x {len(sessions)} sessions in {time.perf_counter() - t0:.0f} s")
        client = connect(None, n_workers=2)
        try:
            run(store, sessions, client, Path(tmp), args.repeats)
        finally:
            client.close()


def run(store: TableStore, sessions, client, tmp: Path, repeats: int) -> None:
    def features(c):
        feature_sessions(store, sessions, client=c)
        return store.read_partitions(FEATURES, sessions[0], sessions[-1])

    counter = iter(range(10**6))

    def studies(c):
        report = optimise_strategies(store, STUDIES, f"sqlite:///{tmp / f'optuna-{next(counter)}.db'}", client=c)
        return report.strategies, report.trials

    times: dict[str, list[float]] = {}
    for name, fn in (("features", features), ("studies", studies)):
        reference = fn(None)  # warm both: imports, numba cache, file cache
        other = fn(client)
        same = (reference.equals(other) if isinstance(reference, pd.DataFrame)
                else all(a.equals(b) for a, b in zip(reference, other)))
        print(f"{name}: cluster tables equal in process: {same}")
        for _ in range(repeats):
            for mode, c in (("in process", None), ("2 workers", client)):
                t = time.perf_counter()
                fn(c)
                times.setdefault(f"{name} {mode}", []).append(time.perf_counter() - t)
    trials = len(STUDIES.families) * len(STUDIES.levels) * STUDIES.n_trials
    print(f"studies: {len(STUDIES.families) * len(STUDIES.levels)} studies x {STUDIES.n_trials} trials = {trials}")
    for label, values in times.items():
        print(f"  {label:<24} median {statistics.median(values):6.2f} s  (rounds {', '.join(f'{v:.2f}' for v in values)})")
    for name in ("features", "studies"):
        ratio = statistics.median(times[f"{name} in process"]) / statistics.median(times[f"{name} 2 workers"])
        print(f"  {name}: in process / 2 workers = {ratio:.2f}x")


if __name__ == "__main__":
    main()
