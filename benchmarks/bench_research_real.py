"""The research chain on the shared S&P 500 set: which strategies pass which gate, and why not.

Run: ``NUMBA_CACHE_DIR=.numba_cache .venv/bin/python benchmarks/bench_research_real.py``
(``--symbols``, ``--start``/``--end``, ``--trials``, ``--window-trials``, ``--levels``, ``--train``/``--test``,
``--data-dir`` to reuse a built store, ``--no-alpha`` for the chain without the alpha models).

Data: ``--symbols`` real symbols (spread evenly over the alphabet among those with bars over the
whole range) through ingestion, quality, cleaning, features and the scanner
(``build_real_research_data``); with the alpha chain, labels, a model per horizon at every
``--model-every`` sessions of the history (``build_alpha_chain``) and their predictions, so
``ml_rank`` is studied. Then optimise -> validate -> allocate through the stage functions.

Prints per strategy the in-sample Sharpe, DSR (and its N), PBO, out-of-sample Sharpe and the
information ratio against each benchmark, which gates failed, and the allocation (or the refusal),
with wall and CPU seconds per step and the load average. The peers, in the same run, are the
benchmarks every report shows (buy-and-hold of the strategy's symbols, the equal-weight universe,
SMA 50/200) over the same out-of-sample sessions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from alphatwin_pipelines.alpha.training import AlphaTrainingConfig  # noqa: E402
from alphatwin_pipelines.optimise.study import default_storage_url  # noqa: E402
from alphatwin_pipelines.portfolio import AllocationPolicy, CashAllocation  # noqa: E402
from alphatwin_pipelines.reports import ValidationSettings  # noqa: E402
from alphatwin_pipelines.stages.optimisation import OptimisationConfig, optimise_strategies  # noqa: E402
from alphatwin_pipelines.stages.portfolio import allocate_portfolio  # noqa: E402
from alphatwin_pipelines.stages.validation import validate_strategies  # noqa: E402
from alphatwin_pipelines.storage import TableStore  # noqa: E402
from alphatwin_pipelines.tables import CLEANED  # noqa: E402
from tests.fixtures.research import build_alpha_chain, build_real_research_data  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def pick_symbols(bars: pd.DataFrame, n: int, start: str, end: str) -> list[str]:
    span = bars[bars["date"].between(start, end)].groupby("symbol")["date"].agg(["min", "max"])
    full = sorted(span[(span["min"] <= pd.Timestamp(start) + pd.Timedelta(days=7))
                       & (span["max"] >= pd.Timestamp(end) - pd.Timedelta(days=7))].index)
    step = max(1, len(full) // n)
    return full[::step][:n]


class Clock:
    def __init__(self):
        self.rows = []

    def __call__(self, name, fn, *args, **kwargs):
        w, c = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        self.rows.append((name, time.perf_counter() - w, time.process_time() - c, os.getloadavg()[0]))
        print(f"  {name}: {self.rows[-1][1]:.1f} s wall, {self.rows[-1][2]:.1f} s CPU, load {self.rows[-1][3]:.1f}",
              flush=True)
        return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--symbols", type=int, default=100)
    p.add_argument("--start", default="2011-01-03")
    p.add_argument("--end", default="2020-12-31")
    p.add_argument("--train-years", type=float, default=5.0)
    p.add_argument("--trials", type=int, default=64)
    p.add_argument("--window-trials", type=int, default=8)
    p.add_argument("--levels", default="0,3")
    p.add_argument("--families", default="")
    p.add_argument("--train", type=int, default=252)
    p.add_argument("--test", type=int, default=126)
    p.add_argument("--model-every", type=int, default=63)
    p.add_argument("--model-train", type=int, default=250)
    p.add_argument("--no-alpha", action="store_true")
    p.add_argument("--data-dir", type=Path)
    args = p.parse_args()
    clock = Clock()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="research_real_")) / "data"
    store = TableStore(data_dir)
    print(f"load {os.getloadavg()}; data {data_dir}", flush=True)
    if not store.stored_sessions(CLEANED).size:
        bars = pd.read_parquet(SHARED / "sp500_daily_1999_2021.parquet").rename(
            columns={"dividend_amount": "dividend", "split_coefficient": "split_ratio"}).assign(source="sp500")
        symbols = pick_symbols(bars, args.symbols, args.start, args.end)
        print(f"{len(symbols)} symbols: {' '.join(symbols)}", flush=True)
        store = clock("daily stages", build_real_research_data, data_dir, bars, SHARED / "sp500_constituents.csv",
                      symbols, args.start, args.end)
        del bars
    levels = tuple(int(x) for x in args.levels.split(","))
    families = tuple(args.families.split(",")) if args.families else OptimisationConfig().families
    config = OptimisationConfig(families=families, levels=levels, n_trials=args.trials, batch_size=8,
                                shortlist_size=args.symbols, train_years=args.train_years, n_pairs=3)
    sessions = store.stored_sessions(CLEANED)
    if not args.no_alpha and "ml_rank" in families:
        # scores over the whole history, so every walk-forward train slice has them too
        cutoffs = sessions[args.model_train + 60::args.model_every]
        training = AlphaTrainingConfig(train_sessions=args.model_train)
        clock(f"alpha chain ({len(cutoffs)} cutoffs x 2 horizons)", build_alpha_chain, store, cutoffs, training,
              default_storage_url(store.data_dir))
    optimised = clock("optimise", optimise_strategies, store, config).strategies
    settings = ValidationSettings(train=args.train, test=args.test, trials_per_window=args.window_trials)
    run = clock("validate", validate_strategies, store, settings)
    rows = []
    for v, (_, r) in zip(run.validations, run.reports.iterrows()):
        rows.append({"family": r["family"], "L": r["level"], "is_sr": r["is_sharpe"], "dsr": r["dsr"],
                     "N": r["dsr_n_trials"], "pbo": r["pbo"], "oos_sr": r["oos_sharpe"],
                     "oos_cagr": r["oos_cagr"], **{f"ir_{k[:6]}": x for k, x in v.information_ratios.items()},
                     "net": float(v.positions["weight"].sum()), "failed": ",".join(v.failures)})
    table = pd.DataFrame(rows).sort_values(["family", "L"])
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.2f}".format):
        print(table.to_string(index=False))
        for v in run.validations[:1]:
            print(f"{v.spec.family} L{v.spec.level} and its benchmarks over its out-of-sample sessions:\n"
                  f"{v.benchmarks[['name', 'sharpe', 'cagr']]}")
    print(f"{int(run.reports['passed'].sum())} of {len(run.reports)} passed; gate failures: "
          f"{table['failed'].str.split(',').explode().value_counts().to_dict()}")
    allocation = clock("allocate", allocate_portfolio, store, AllocationPolicy()).allocation
    if isinstance(allocation, CashAllocation):
        print(f"allocation {allocation.version}: all cash ({allocation.reason})")
    else:
        print(f"allocation {allocation.version}: {json.dumps(allocation.weights.round(4).to_dict())}")
    print(f"total {sum(r[1] for r in clock.rows):.0f} s wall, {sum(r[2] for r in clock.rows):.0f} s CPU; "
          f"optimised {len(optimised)} studies")


if __name__ == "__main__":
    main()
