"""Alpha models on the shared S&P 500 set: our features -> labels -> LightGBM -> predictions against
Qlib's own LightGBM + Alpha158 workflow, same data, same split. Figures only, no asserts.

    .venv/bin/python benchmarks/bench_alpha.py [--horizons 1 5] [--qlib-results DIR] [--trials N]

Split: features 2007-2020, train 2008-2014, valid 2015-2016 (Qlib: early stopping; ours: scored
only, see ``alpha_ours.py``), test 2017-2020.
Both sides start from the same adjusted bars (read + ``adjust``, timed as "prep"; Qlib's copy is
then converted to its binary format with its ``dump_bin.py``, timed as "convert"): the compared
work is dataset build (features + labels) + training + prediction.

Qlib runs in its own venv (``benchmarks/.qlib-venv``, created here on demand with ``pip install
pyqlib``; it pins other versions than the project's) through ``qlib_peer.py``, as a subprocess,
with ``scripts/dump_bin.py`` read from a microsoft/qlib checkout (``--qlib-repo``, default the
``fetch`` mirror). ``--qlib-results DIR`` reuses a peer run's ``result_h<h>.json`` from earlier in
the same hour instead (the run takes tens of minutes on two loaded cores).

Our side is ``alpha_ours.OurPipeline``: the project's alpha engine (``compute_features``,
``compute_labels``, ``training_set``, ``models.fit`` without search, ``train_version`` with the
purged-CV / Optuna search of ``--trials`` trials, the scores of ``predict_session``), each step
timed in wall and CPU seconds.

Evaluation (the same code for both sides, ``daily_correlation`` of the factor report): per-day
IC / rank IC on the test segment against each side's own label and against the common next-open
label; ICIR; a 95 % moving-block bootstrap CI (blocks of 20 sessions, seeded) of the mean IC and
rank IC; the top-50 long-only portfolio (equal weight, rebalanced daily on the score, next-open
1-session return, before costs), annualised.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alphatwin_pipelines.alpha.factor_report import daily_correlation  # noqa: E402
from alphatwin_pipelines.profiling import measure  # noqa: E402
from benchmarks.alpha_ours import OurPipeline  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "sp500_daily_1999_2021.parquet"
QLIB_VENV = ROOT / "benchmarks" / ".qlib-venv"
QLIB_MIRROR = Path("/work/.mirror/microsoft+qlib/repo")
SPLIT = {"features": ("2007-01-01", "2020-12-31"), "train": ("2008-01-01", "2014-12-31"),
         "valid": ("2015-01-01", "2016-12-31"), "test": ("2017-01-01", "2020-12-31")}
WARMUP_START = "2006-01-01"  # a year of history before the first feature date
TOP_K = 50
BOOTSTRAP = dict(reps=1000, block=20, seed=0)


def load_adjusted(symbols: int | None = None) -> pd.DataFrame:
    from alphatwin_pipelines.adjustment import adjust

    bars = pd.read_parquet(DATA).rename(columns={"dividend_amount": "dividend", "split_coefficient": "split_ratio"})
    bars = bars[(bars["date"] >= WARMUP_START) & (bars["date"] <= SPLIT["features"][1])]
    if symbols:  # a quick check on the first symbols only
        bars = bars[bars["symbol"].isin(sorted(bars["symbol"].unique())[:symbols])]
    return adjust(bars).sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)


def next_open_labels(adjusted: pd.DataFrame, horizon: int) -> pd.Series:
    """Return of buying at the next session's open and selling at the open h sessions later."""
    by_symbol = adjusted.groupby("symbol", sort=False)["adj_open"]
    return by_symbol.shift(-(horizon + 1)) / by_symbol.shift(-1) - 1.0


def block_bootstrap_ci(values: np.ndarray, reps: int, block: int, seed: int) -> tuple[float, float]:
    """95 % interval of the mean by a moving-block bootstrap (daily ICs are autocorrelated,
    and overlapping multi-session labels more so)."""
    values = values[np.isfinite(values)]
    n = len(values)
    if n < 2 * block:
        return np.nan, np.nan
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n - block + 1, size=(reps, int(np.ceil(n / block))))
    index = (starts[:, :, None] + np.arange(block)).reshape(reps, -1)[:, :n]
    means = values[index].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def evaluate(predictions: pd.DataFrame, label: str) -> dict:
    daily = daily_correlation(predictions, "score", label, ["date"], min_names=20)
    out = {}
    for key in ("ic", "rank_ic"):
        series = daily[key].dropna().to_numpy()
        low, high = block_bootstrap_ci(series, **BOOTSTRAP)
        out[key] = (series.mean(), series.mean() / series.std(ddof=1), low, high)
    return out


def top_k_annualised(predictions: pd.DataFrame, returns: str = "common_1") -> float:
    rows = predictions[predictions["score"].notna() & predictions[returns].notna()]
    top = rows.sort_values(["date", "score"], ascending=[True, False]).groupby("date").head(TOP_K)
    daily = top.groupby("date")[returns].mean()
    return float(np.expm1(np.log1p(daily).mean() * 252))


def ensure_qlib_venv() -> Path:
    python = QLIB_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run(["python3.11", "-m", "venv", str(QLIB_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "pyqlib"], check=True)
    return python


def run_qlib(adjusted: pd.DataFrame, horizons, work: Path, repo: Path, threads: int) -> dict[int, dict]:
    csv = work / "csv"
    csv.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"date": adjusted["date"].dt.strftime("%Y-%m-%d"), "symbol": adjusted["symbol"].astype(str),
                          "open": adjusted["adj_open"], "high": adjusted["adj_high"], "low": adjusted["adj_low"],
                          "close": adjusted["adj_close"], "volume": adjusted["adj_volume"],
                          # no intraday data: the typical price stands in for Alpha158's $vwap
                          "vwap": (adjusted["adj_high"] + adjusted["adj_low"] + adjusted["adj_close"]) / 3,
                          "factor": adjusted["adj_close"] / adjusted["close"]})
    for symbol, part in frame.groupby("symbol", sort=True):
        part.to_csv(csv / f"{symbol}.csv", index=False)
    python, results = ensure_qlib_venv(), {}
    for k, h in enumerate(horizons):
        command = [str(python), str(ROOT / "benchmarks" / "qlib_peer.py"), "--csv", str(csv), "--work", str(work),
                   "--qlib-repo", str(repo), "--horizon", str(h), "--threads", str(threads), *(["--skip-convert"] if k else [])]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        results[h] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def common_labels(adjusted: pd.DataFrame, horizons) -> pd.DataFrame:
    frame = adjusted[["date", "symbol"]].assign(symbol=adjusted["symbol"].astype(str))
    for h in sorted({1, *horizons}):
        frame[f"common_{h}"] = next_open_labels(adjusted, h).to_numpy()
    return frame


def report(side: str, h: int, predictions: pd.DataFrame, times: dict, rss_mb: float, cpu_s: dict | None = None) -> None:
    work = sum(times[k] for k in ("build", "train", "predict"))
    cpu = f"   CPU {sum(cpu_s.values()):7.1f} s" if cpu_s else ""
    print(f"  {side:<34} build {times['build']:7.1f} s  train {times['train']:7.1f} s  predict {times['predict']:5.2f} s"
          f"  = {work:7.1f} s{cpu}   peak RSS {rss_mb:6.0f} MiB")
    for label, text in (("label", "own label"), (f"common_{h}", "next-open label")):
        m = evaluate(predictions, label)
        print(f"      vs {text:<16} IC {m['ic'][0]:+.4f} [{m['ic'][2]:+.4f}, {m['ic'][3]:+.4f}] ICIR {m['ic'][1]:+.3f}"
              f" | rank IC {m['rank_ic'][0]:+.4f} [{m['rank_ic'][2]:+.4f}, {m['rank_ic'][3]:+.4f}]"
              f" rank ICIR {m['rank_ic'][1]:+.3f}")
    print(f"      top-{TOP_K} long-only, next-open 1-session returns, before costs: "
          f"{top_k_annualised(predictions):+.1%} a year over {predictions['date'].nunique()} test sessions")


def _cpu(figures: dict, steps=("build", "train", "predict")) -> dict | None:
    """CPU seconds per step (user + system, worker processes included), when the run recorded them:
    on a shared machine they say more than wall time."""
    keys = [f"{k}_cpu_s" for k in steps if f"{k}_cpu_s" in figures]
    return {k: figures[k] for k in keys} if keys else None


def run_ours(ours: OurPipeline, adjusted: pd.DataFrame, h: int, work: Path) -> dict:
    """Build, train (without, then with the search) and predict, timed (wall and CPU seconds);
    each model's test predictions and the figures saved under ``work`` (``--ours-results``)."""
    work.mkdir(parents=True, exist_ok=True)
    figures, costs = {}, []

    def timed(step, call):
        cpu = sum(os.times()[:2])  # user + system of this process (LightGBM's threads included)
        with measure() as cost:
            out = call()
        figures[f"{step}_s"], figures[f"{step}_cpu_s"] = cost.duration_s, sum(os.times()[:2]) - cpu
        costs.append(cost.peak_rss_mb)
        return out

    dataset = timed("build", lambda: ours.build_dataset(adjusted, h))
    figures.update(features=len(ours.feature_columns(dataset)), train_rows=dataset["data"].rows)
    model = timed("train", lambda: ours.train(dataset))
    figures["trees"] = int(model.booster_.num_trees())
    out = timed("predict", lambda: ours.predict(model, dataset))
    searched, models = None, {"fixed": model}
    if ours.n_trials:
        version = timed("search", lambda: ours.train_search(dataset))
        found = version.found
        figures.update(search_params=found.params, search_trials=found.trials_run, search_cv_rank_ic=found.score.rank_ic,
                       baseline_cv_rank_ic=found.baseline.rank_ic, search_version=version.version)
        searched, models["search"] = timed("search_predict", lambda: ours.predict(version.model, dataset)), version.model
    figures["explain_s_per_session"], figures["explain_sessions"] = ours.explain_seconds(model, dataset)
    figures["valid"] = {k: ours.valid_predictions(m, dataset) for k, m in models.items()}
    for key, frame in list(figures["valid"].items()):
        daily = daily_correlation(frame, "score", "label", ["date"], min_names=20)
        figures["valid"][key] = float(daily["rank_ic"].mean())
    figures["peak_rss_mb"] = max(costs)
    for key, frame in (("predictions", out), ("search_predictions", searched)):
        if frame is None:
            continue
        path = work / f"ours_h{h}{'' if key == 'predictions' else '_search'}.parquet"
        frame.to_parquet(path, index=False)
        figures[key] = str(path)
    (work / f"ours_h{h}.json").write_text(json.dumps(figures, default=str))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--horizons", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--qlib-results", type=Path, help="reuse qlib_peer.py results (result_h<h>.json) from this folder")
    parser.add_argument("--qlib-repo", type=Path, default=QLIB_MIRROR)
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "out" / "alpha")
    parser.add_argument("--skip-qlib", action="store_true")
    parser.add_argument("--ours-results", type=Path, help="reuse our side's ours_h<h>.json from this folder")
    parser.add_argument("--threads", type=int, default=2, help="LightGBM threads, both sides")
    parser.add_argument("--trials", type=int, default=12, help="Optuna trials of our CV search (0: no search)")
    parser.add_argument("--symbols", type=int, help="only the first N symbols (a quick check, not the benchmark)")
    args = parser.parse_args()
    if not DATA.exists():
        print(f"data not found: {DATA}")
        return 0
    with measure() as prep:
        adjusted = load_adjusted(args.symbols)
    print(f"S&P 500 set: {adjusted['symbol'].nunique()} symbols, {len(adjusted):,} rows {WARMUP_START}..{SPLIT['features'][1]}; "
          f"prep (read + adjust, both sides) {prep.duration_s:.1f} s; cpus {os.cpu_count()}")
    labels = common_labels(adjusted, args.horizons)
    qlib = {}
    if args.qlib_results:
        for h in args.horizons:
            path = args.qlib_results / f"result_h{h}.json"
            if path.exists():
                qlib[h] = json.loads(path.read_text().strip().splitlines()[-1])
                age = (time.time() - path.stat().st_mtime) / 60
                print(f"Qlib h={h}: reusing {path} (written {age:.0f} min ago)")
    elif not args.skip_qlib:
        qlib = run_qlib(adjusted, args.horizons, args.work, args.qlib_repo, args.threads)
    ours = OurPipeline(SPLIT, args.trials, args.work)
    for h in args.horizons:
        print(f"\nhorizon {h} session(s); test {SPLIT['test'][0]}..{SPLIT['test'][1]}")
        saved = args.ours_results / f"ours_h{h}.json" if args.ours_results else None
        if saved and saved.exists():
            mine = json.loads(saved.read_text())
            print(f"ours h={h}: reusing {saved} (written {(time.time() - saved.stat().st_mtime) / 60:.0f} min ago)")
        else:
            mine = run_ours(ours, adjusted, h, args.work)
        predictions = pd.read_parquet(mine["predictions"]).merge(labels, on=["date", "symbol"], how="left")
        times = {k: mine[f"{k}_s"] for k in ("build", "train", "predict")}
        valid = ", ".join(f"{v:+.4f} ({k})" for k, v in mine["valid"].items())
        print(f"  ours: {mine['train_rows']:,} training rows (2008-2014, labels known before the cutoff); "
              f"valid 2015-2016 rank IC {valid}")
        report(f"{ours.name}, no search, {mine['features']} features, {mine['trees']} trees", h, predictions, times,
               mine["peak_rss_mb"], _cpu(mine))
        runs = [("no search", times, _cpu(mine))]
        if "search_predictions" in mine:
            searched = pd.read_parquet(mine["search_predictions"]).merge(labels, on=["date", "symbol"], how="left")
            stimes = {"build": mine["build_s"], "train": mine["search_s"], "predict": mine["search_predict_s"]}
            print(f"  search: {mine['search_trials']} Optuna trials x 3 purged folds (+ best and baseline re-scored, final "
                  f"fit) -> {mine['search_params']}; CV rank IC {mine['search_cv_rank_ic']:+.4f} against the linear "
                  f"baseline's {mine['baseline_cv_rank_ic']:+.4f}")
            report(f"{ours.name}, with CV/Optuna search", h, searched, stimes, mine["peak_rss_mb"],
                   _cpu(mine, ("build", "search", "search_predict")))
            runs.append(("with search", stimes, _cpu(mine, ("build", "search", "search_predict"))))
        print(f"  predict_session with SHAP top-3 explanations: {mine['explain_s_per_session']:.2f} s a session "
              f"(mean of {mine['explain_sessions']} test sessions; not in the sums)")
        if h in qlib:
            q = qlib[h]
            peer = pd.read_parquet(q["predictions"])
            peer = peer.assign(date=pd.to_datetime(peer["date"]), symbol=peer["symbol"].astype(str))
            peer = peer.merge(labels, on=["date", "symbol"], how="left")
            qtimes = {"build": q["dataset_build_s"], "train": q["train_s"], "predict": q["predict_s"]}
            report(f"Qlib Alpha158 + LGBModel, {q['features']} features, {q['trees']} trees", h, peer, qtimes,
                   q["peak_rss_mb"], _cpu(q))
            if "convert_s" in q:
                print(f"      (Qlib's dump_bin conversion, not in the sum: {q['convert_s']:.1f} s)")
            for what, wall, cpu in runs:
                qcpu = _cpu(q)
                cpu_ratio = f", CPU {sum(qcpu.values()) / sum(cpu.values()):.1f}x" if qcpu and cpu else ""
                print(f"  build + train + predict, ours {what}: {sum(qtimes.values()) / sum(wall.values()):.1f}x faster "
                      f"than Qlib's in wall time{cpu_ratio} (target >= 5x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
