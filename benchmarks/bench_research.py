"""Benchmark: the weekly research run at the asset defaults on 100 synthetic symbols x 10 years.

Run: ``NUMBA_CACHE_DIR=.numba_cache .venv/bin/python benchmarks/bench_research.py``
(``--families``/``--levels``/``--trials`` to measure a stated part, ``--symbols``, ``--data-dir`` to
reuse a built data directory, ``--skip-validation`` to stop after the studies, ``--workers N`` to
run the studies and the validation on a local Dask cluster of N worker processes, as the assets do with
``ALPHATWIN_DASK_SCHEDULER`` set).

Data: the offline synthetic market through ingestion, quality, cleaning, features and the scanner
(``build_research_data``), 2014-01-02 .. 2024-12-31, so the 10-year in-sample window has its
warm-up sessions. The run is the stages the research assets call, in order, with their default
configurations (``OptimisationConfig()``: every family x level, 500 trials, batched;
``ValidationSettings()``: the re-optimising walk-forward, 50 trials per window; the default
``AllocationPolicy``): ``optimise_strategies`` -> ``validate_strategies`` -> ``allocate_portfolio``.
``ml_rank`` is left out: it needs the alpha model chain (alpha_labels .. alpha_predictions), which
bench_alpha.py times. Progress with the time left goes to the log (one line per study, two per
study's trials, one per walk-forward). Prints wall and CPU time per stage, peak RSS and the load
(CPU and RSS include the cluster's worker processes).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alphatwin_pipelines.backtest import configure_numba_cache  # noqa: E402
from alphatwin_pipelines.profiling import measure  # noqa: E402
from alphatwin_pipelines.stages.optimisation import OptimisationConfig, optimise_strategies  # noqa: E402
from alphatwin_pipelines.stages.portfolio import allocate_portfolio  # noqa: E402
from alphatwin_pipelines.stages.validation import validate_strategies  # noqa: E402
from alphatwin_pipelines.storage import TableStore  # noqa: E402
from alphatwin_pipelines.strategies.spec import ALL_FAMILIES  # noqa: E402
from tests.fixtures.research import build_research_data  # noqa: E402


def timed(label: str, fn, figures: dict):
    with measure(interval_s=0.05, children=True) as cost:  # the cluster's worker processes count too
        out = fn()
    figures[label] = (cost.duration_s, cost.cpu_s, cost.peak_rss_mb, os.getloadavg()[0])
    wall, cpu, rss, load = figures[label]
    each = ", ".join(f"{mb:.0f}" for mb in sorted(cost.process_peaks_mb.values(), reverse=True) if mb >= 50)
    print(f"{label}: {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {rss:.0f} MB summed (each process's own peak, "
          f"MB: {each}), load average {load:.1f}", flush=True)
    return out


def main() -> None:
    configure_numba_cache()
    defaults = OptimisationConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=[f for f in ALL_FAMILIES if f != "ml_rank"])
    parser.add_argument("--levels", type=int, nargs="+", default=list(defaults.levels))
    parser.add_argument("--trials", type=int, default=defaults.n_trials)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--skip-validation", action="store_true")
    parser.add_argument("--reuse-studies", action="store_true",
                        help="validate the optimised_strategies already in --data-dir instead of optimising")
    parser.add_argument("--workers", type=int, default=0,
                        help="run the studies and the validation on a local Dask cluster of this many worker "
                             "processes (0: in process)")
    parser.add_argument("--dask-malloc", action="store_true",
                        help="with --workers: Dask's default worker malloc settings (every mid-sized array "
                             "mapped and unmapped) instead of the tuned local cluster's, for comparison")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    log = logging.getLogger("bench_research")
    print(f"cpus: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.1f}", flush=True)
    figures: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        store = TableStore(data_dir)
        if not store.stored_sessions("scanner_results").size:
            timed("data: ingest .. scanner", lambda: build_research_data(
                data_dir, n_symbols=args.symbols, start="2014-01-02", end="2024-12-31"), figures)
        config = OptimisationConfig(families=tuple(args.families), levels=tuple(args.levels), n_trials=args.trials)
        storage = f"sqlite:///{Path(tmp) / 'optuna.db'}"
        with contextlib.ExitStack() as stack:
            client = None
            if args.workers:  # as the Dagster assets run with ALPHATWIN_DASK_SCHEDULER set: studies and validation
                from distributed import Client, LocalCluster

                from alphatwin_pipelines.scanner.dask_runner import local_cluster

                if args.dask_malloc:  # Dask's default glibc settings: freed arrays unmapped at once
                    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                           memory_limit=0, dashboard_address=None)
                else:  # the Dagster layer's local cluster: freed memory kept for reuse, no worker profiler
                    cluster = local_cluster(n_workers=args.workers, memory_limit=0)
                stack.enter_context(cluster)
                client = stack.enter_context(Client(cluster))
            workers = f"{args.workers or 'no'} workers"
            if args.reuse_studies and store.whole_path("optimised_strategies").exists():
                print("optimisation: skipped, validating the data directory's optimised_strategies", flush=True)
            else:
                report = timed(f"optimisation ({workers})",
                               lambda: optimise_strategies(store, config, storage, logger=log, client=client), figures)
                print(f"  {len(report.strategies)} studies, {report.trials_run} trials, {report.start:%Y-%m-%d} .. "
                      f"{report.end:%Y-%m-%d}, {len(report.shortlist.symbols)} symbols", flush=True)
            if not args.skip_validation:
                run = timed(f"validation (walk-forward re-optimisation, {workers})",
                            lambda: validate_strategies(store, storage_url=storage, logger=log, client=client), figures)
                print(f"  {len(run.reports)} reports, {int(run.reports['passed'].sum())} passed", flush=True)
        if not args.skip_validation:
            try:
                timed("allocation", lambda: allocate_portfolio(store), figures)
            except Exception as exc:  # no passing strategy is a result of the research, not of the benchmark
                print(f"allocation: {type(exc).__name__}: {exc}", flush=True)
        research = [v for k, v in figures.items() if not k.startswith("data")]
        print(f"\nresearch run: {sum(v[0] for v in research):.1f} s wall, {sum(v[1] for v in research):.1f} s CPU, "
              f"peak RSS {max(v[2] for v in research):.0f} MB (targets: <= 30 min, <= 6 GiB); "
              f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
