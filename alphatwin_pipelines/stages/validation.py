"""Strategy validation stage: optimised strategies + adjusted bars in; reports, OOS returns and positions out.

Every strategy is validated on the bars of its own symbols (``symbols_json``) over all cleaned
history, adjusted as of the latest cleaned session. First every strategy's walk-forward runs
(one study per window, in ``storage_url``: the run's Optuna storage, so a re-run resumes them);
then each family's trial count (its studies at every level plus all their windows' studies) is
known and the DSR of each of its strategies deflates by it. The three tables are written in one batch
(all or nothing) after the HTML pages, each page replaced atomically; rows are sorted by
strategy id so the same inputs give the same bytes.

Reproducibility: ``record_json`` is the optimiser's record with a ``validation`` section added
(settings, spec, symbols, last session), enough for :func:`replay_validation` to recompute the
out-of-sample metrics from the data directory alone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from alphatwin_pipelines.atomic import atomic_write_bytes
from alphatwin_pipelines.cluster import run_tasks, run_tasks_held
from alphatwin_pipelines.optimise.progress import Countdown
from alphatwin_pipelines.reports.evaluate import (
    StrategyValidation, TrialCount, ValidationSettings, oos_metrics, run_walk_forward, validate_strategy,
)
from alphatwin_pipelines.reports.html import render_report
from alphatwin_pipelines.reports.portfolio import benchmark_returns
from alphatwin_pipelines.reports.reoptimise import WalkForwardRun
from alphatwin_pipelines.reports.regimes import regime_labels
from alphatwin_pipelines.schema import frame_to_arrow
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.strategies import MarketArrays, StrategySpec
from alphatwin_pipelines.tables import (
    OPTIMISATION_TRIALS, OPTIMISED, STRATEGY_POSITIONS, STRATEGY_RETURNS, VALIDATION, read_adjusted, stored_path,
)

REPORTS_DIR = "reports"
OPTIMISED_INPUTS = ("strategy_id", "family", "level", "complexity", "spec_json", "symbols_json", "start", "end",
                    "n_trials", "is_sharpe", "scanner_partition", "record_json")
TRIAL_INPUTS = ("strategy_id", "trial_number", "params_json", "sharpe")
REPORT_COLUMNS = ("strategy_id", "family", "level", "complexity", "spec_json", "symbols_json", "n_trials",
                  "is_sharpe", "oos_sharpe", "oos_sortino", "oos_cagr", "oos_max_drawdown", "dsr", "dsr_n_trials",
                  "pbo", "wf_windows", "wf_efficiency", "param_stability", "information_ratio", "passed",
                  "reasons", "report_path", "scanner_partition", "record_json")

#: weight is signed (short < 0); gross (sum of |weight|) and net (sum of weight) per strategy.
POSITION_COLUMNS = ("strategy_id", "symbol", "date", "weight", "gross_exposure", "net_exposure")


@dataclass
class ValidationRun:
    reports: pd.DataFrame
    returns: pd.DataFrame
    positions: pd.DataFrame
    validations: list[StrategyValidation]


def _require(frame: pd.DataFrame, columns, table: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{table} lacks contract columns {missing} (docs/contracts.md): re-materialise {table}")


def _symbols(row, universe: MarketArrays) -> list[str]:
    symbols = json.loads(row["symbols_json"])
    unknown = sorted(set(symbols) - set(universe.symbols))
    if not symbols or unknown:
        raise ValueError(f"{OPTIMISED}: strategy {row['strategy_id']} lists symbols with no cleaned bars "
                         f"({unknown or 'an empty list'}): materialise cleaned_ohlcv for them or re-run the optimisation")
    return list(symbols)


def _record(row, settings: ValidationSettings, symbols: list[str], last_session: pd.Timestamp,
            window_models: list | None = None) -> str:
    try:
        record = json.loads(row["record_json"]) if row["record_json"] else {}
    except (TypeError, ValueError):
        record = {"upstream_record": str(row["record_json"])}
    if not isinstance(record, dict):
        record = {"upstream_record": record}
    record["validation"] = {"settings": settings.to_dict(), "spec_json": row["spec_json"], "symbols": symbols,
                            "last_session": f"{last_session:%Y-%m-%d}"}
    if window_models is not None:  # ml_rank: the model that scored each walk-forward test window
        record["validation"]["window_models"] = window_models
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def _ml_rank_market(store: TableStore, market: MarketArrays, spec: StrategySpec, settings: ValidationSettings,
                    storage_url: str | None):
    """ml_rank's market: stored scores, each of the strategy's walk-forward test windows (the same
    windows, purge and embargo as its re-optimisation) re-scored by a model trained only on labels
    known before the window's train end (alpha.scores), and the models used."""
    from alphatwin_pipelines.alpha.scores import walk_forward_market
    from alphatwin_pipelines.optimise.study import default_storage_url
    from alphatwin_pipelines.reports.reoptimise import purge_sessions
    from alphatwin_pipelines.stats import walk_forward_windows

    lookback, horizon = purge_sessions(spec)
    windows = []  # none fits: stored scores only, and the walk-forward reports it as not measurable
    if settings.train + lookback + horizon + settings.embargo + 1 <= len(market.dates):
        windows = walk_forward_windows(market.dates, settings.train, settings.test,
                                       anchored=settings.mode == "anchored", purge=lookback + horizon,
                                       embargo=settings.embargo)
    return walk_forward_market(store, market, windows, storage_url or default_storage_url(store.data_dir))


def _walk_forward_task(shared, task):
    """One strategy's walk-forward (a task of :func:`~alphatwin_pipelines.cluster.run_tasks`)."""
    markets, settings, storage_url = shared
    spec_json, symbols = task
    return run_walk_forward(StrategySpec.from_json(spec_json), markets[symbols], settings, storage_url)


def _report_task(shared, task) -> tuple[StrategyValidation, bytes]:
    """One strategy's report and HTML page (a task of :func:`~alphatwin_pipelines.cluster.run_tasks`);
    ``market`` None: the shared market of the strategy's symbols. The validation comes back with
    its walk-forward's summary (:meth:`~.reoptimise.WalkForwardRun.summary`): the page already
    holds what the per-window frames showed."""
    markets, benchmarks, labels, settings = shared
    row, trials, wf, counted, market = task
    market = markets[tuple(json.loads(row["symbols_json"]))] if market is None else market
    v = validate_strategy(row, trials, market, benchmarks[tuple(market.symbols)], labels, settings, walk_forward=wf,
                          family_trials=counted)
    page = render_report(v, row).encode("utf-8")
    v.walk_forward = wf.summary()
    return v, page


def validate_strategies(store: TableStore, settings: ValidationSettings | None = None,
                        storage_url: str | None = None, logger=None, client=None) -> ValidationRun:
    """Validate every optimised strategy and replace the three output tables and the HTML pages.
    ``storage_url``: the Optuna storage of the window studies and of ml_rank's per-window model
    searches (default: a scratch file for the former, the data dir's for the latter). With a Dask
    ``client`` each strategy's walk-forward, then each report, is a task on the cluster (ml_rank's
    walk-forwards stay here: they read the data directory); every task is seeded, so the tables
    are those of a run in process."""
    settings = settings or ValidationSettings()
    optimised = store.read_table(OPTIMISED)
    trials = store.read_table(OPTIMISATION_TRIALS)
    _require(optimised, OPTIMISED_INPUTS, OPTIMISED)
    _require(trials, TRIAL_INPUTS, OPTIMISATION_TRIALS)
    if optimised["strategy_id"].duplicated().any():
        raise ValueError(f"{OPTIMISED} has duplicate strategy_id rows: re-materialise it")
    universe = MarketArrays.from_bars(read_adjusted(store), price="adj")
    last = universe.dates[-1]
    labels = regime_labels(universe)
    benchmarks: dict[tuple, pd.DataFrame] = {}
    rows_in = optimised.sort_values("strategy_id").to_dict("records")
    markets, runs, window_models, by_symbols = {}, {}, {}, {}
    for row in rows_in:
        symbols, spec = _symbols(row, universe), StrategySpec.from_json(row["spec_json"])
        # One copy per symbol list: the strategies of a run mostly share the shortlist.
        if tuple(symbols) not in by_symbols:
            by_symbols[tuple(symbols)] = universe.select(symbols)
        markets[row["strategy_id"]] = by_symbols[tuple(symbols)]
        if row["family"] == "ml_rank":
            markets[row["strategy_id"]], window_models[row["strategy_id"]] = _ml_rank_market(
                store, markets[row["strategy_id"]], spec, settings, storage_url)

    walk_forwards = Countdown(len(rows_in))

    def logged(row: dict, w) -> None:
        done = walk_forwards.tick()
        if logger is not None:
            logger.info(f"walk-forward of {row['family']} L{int(row['level'])}: {len(w.windows)} windows, "
                        f"{w.n_trials} trials, purge {w.purge} + embargo {w.embargo}; walk-forwards {done}")

    # Every walk-forward first: the DSR counts them all. ml_rank's here (its market carries scores).
    ml = [row for row in rows_in if row["family"] == "ml_rank"]
    for row in ml:
        runs[row["strategy_id"]] = run_walk_forward(StrategySpec.from_json(row["spec_json"]),
                                                    markets[row["strategy_id"]], settings, storage_url)
        logged(row, runs[row["strategy_id"]])
    plain = [row for row in rows_in if row["family"] != "ml_rank"]
    if client is not None and storage_url is not None:
        from alphatwin_pipelines.optimise.study import open_storage

        open_storage(storage_url)  # the schema is created once, here, not raced by the workers' first studies
    # On a cluster each walk-forward stays on its worker until its report task reads it; only its
    # summary (windows, trial count and Sharpes) comes here for the DSR's counts.
    summaries, held = run_tasks_held(
        _walk_forward_task, [(row["spec_json"], tuple(json.loads(row["symbols_json"]))) for row in plain], client,
        summary=WalkForwardRun.summary, shared=(by_symbols, settings, storage_url), name="walk-forward",
        on_result=lambda i, w: logged(plain[i], w))
    counted = {row["strategy_id"]: runs[row["strategy_id"]].summary() for row in ml}
    counted.update({row["strategy_id"]: w for row, w in zip(plain, summaries)})
    runs.update({row["strategy_id"]: w for row, w in zip(plain, held)})
    counts = {}
    for family, group in optimised.groupby("family"):
        ids = set(group["strategy_id"])
        counts[family] = TrialCount.of(trials[trials["strategy_id"].isin(ids)], int(group["n_trials"].sum()),
                                       [counted[i] for i in sorted(ids)])
    tasks = []
    for row in rows_in:
        market = markets[row["strategy_id"]]
        if tuple(market.symbols) not in benchmarks:
            benchmarks[tuple(market.symbols)] = benchmark_returns(market, universe, settings.costs)
        mine = trials[trials["strategy_id"] == row["strategy_id"]].sort_values("trial_number")
        tasks.append((row, mine, runs.pop(row["strategy_id"]), counts[row["family"]],
                      market if row["family"] == "ml_rank" else None))
    reports_done = Countdown(len(rows_in))

    def reported_one(index: int, outcome) -> None:
        done = reports_done.tick()
        if logger is not None:
            v, row = outcome[0], rows_in[index]
            logger.info(f"report of {row['family']} L{int(row['level'])}: "
                        f"{'passed' if v.passed else 'failed ' + ', '.join(v.failures)}; reports {done}")

    reported = run_tasks(_report_task, tasks, client, shared=(by_symbols, benchmarks, labels, settings), name="report",
                         on_result=reported_one)
    del tasks, held
    rows, streams, holdings, validations = [], [], [], []
    for row, (v, page) in zip(rows_in, reported):
        symbols = list(markets[row["strategy_id"]].symbols)
        path = store.data_dir / REPORTS_DIR / f"{v.strategy_id}.html"
        atomic_write_bytes(path, lambda tmp, page=page: Path(tmp).write_bytes(page))
        m = v.oos_metrics
        rows.append({**{k: row[k] for k in ("strategy_id", "family", "complexity", "spec_json", "symbols_json",
                                          "is_sharpe", "scanner_partition")},
                     "level": int(row["level"]), "n_trials": int(row["n_trials"]),
                     "oos_sharpe": m["sharpe"], "oos_sortino": m["sortino"], "oos_cagr": m["cagr"],
                     "oos_max_drawdown": m["max_drawdown"], "dsr": v.dsr, "dsr_n_trials": int(v.dsr_trials),
                     "pbo": v.pbo, "wf_windows": int(len(v.windows)), "wf_efficiency": v.wf_efficiency,
                     "param_stability": v.param_stability, "information_ratio": v.information_ratio,
                     "passed": v.passed, "reasons": "; ".join(v.failures.values()),
                     "report_path": stored_path(store, path), "record_json": _record(row, settings, symbols, last, window_models.get(row["strategy_id"]))})
        streams.append(pd.DataFrame({"date": v.oos_returns.index, "strategy_id": v.strategy_id,
                                     "return": v.oos_returns.to_numpy(dtype=float)}))
        weights = v.positions["weight"].to_numpy(dtype=float)
        holdings.append(v.positions.assign(strategy_id=v.strategy_id, date=last,
                                           gross_exposure=float(abs(weights).sum()), net_exposure=float(weights.sum())))
        validations.append(v)
    reports = pd.DataFrame(rows, columns=list(REPORT_COLUMNS))
    returns = pd.concat(streams, ignore_index=True) if streams else pd.DataFrame()
    if returns.empty:
        returns = pd.DataFrame({"date": pd.Series(dtype="datetime64[ns]"), "strategy_id": pd.Series(dtype=str),
                                "return": pd.Series(dtype=float)})
    positions = (pd.concat(holdings, ignore_index=True)[list(POSITION_COLUMNS)] if holdings
                 else pd.DataFrame({"strategy_id": pd.Series(dtype=str), "symbol": pd.Series(dtype=str),
                                    "date": pd.Series(dtype="datetime64[ns]"), "weight": pd.Series(dtype=float),
                                    "gross_exposure": pd.Series(dtype=float), "net_exposure": pd.Series(dtype=float)}))
    with store.batch():
        store.write_table(VALIDATION, frame_to_arrow(reports))
        store.write_table(STRATEGY_RETURNS, frame_to_arrow(returns))
        store.write_table(STRATEGY_POSITIONS, frame_to_arrow(positions))
    _remove_stale_pages(store.data_dir / REPORTS_DIR, set(reports["strategy_id"]))
    return ValidationRun(reports, returns, positions, validations)


def _remove_stale_pages(folder: Path, current: set) -> None:
    """Pages of strategies no longer in the table would read as current results: remove them."""
    for page in folder.glob("*.html"):
        if re.fullmatch(r"[0-9a-f]{16,64}", page.stem) and page.stem not in current:
            page.unlink(missing_ok=True)


def replay_validation(record_json: str, data_dir, storage_url: str | None = None) -> dict:
    """Recompute a strategy's out-of-sample metrics from its ``record_json`` and the data directory.

    The walk-forward re-runs its window studies (seeded: the same trials, so the same choices).
    """
    spec_record = json.loads(record_json)["validation"]
    settings = ValidationSettings.from_dict(spec_record["settings"])
    spec = StrategySpec.from_json(spec_record["spec_json"])
    last = pd.Timestamp(spec_record["last_session"])
    bars = read_adjusted(TableStore(data_dir), end=last, as_of=last)
    market = MarketArrays.from_bars(bars, price="adj").select(spec_record["symbols"])
    if spec.family == "ml_rank":
        market, _ = _ml_rank_market(TableStore(data_dir), market, spec, settings, storage_url)
    wf = run_walk_forward(spec, market, settings, storage_url)
    return oos_metrics(wf)
