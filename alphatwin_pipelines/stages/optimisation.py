"""Optimisation stage: one Optuna study per strategy family x complexity level, without Dagster.

Inputs: the last ``scanner_results`` partition (the shortlist, ``optimise.shortlist``: the
best-ranked distinct symbols, filled up with the most liquid others; optionally only a sector or an
explicit list) and the cleaned bars of those symbols, adjusted as of that session. The in-sample window is the last ``train_years`` of cleaned
sessions up to the scanner session, with up to ``warmup_sessions`` earlier sessions to warm
indicators up (see :mod:`alphatwin_pipelines.optimise.objective`). Outputs (docs/contracts.md):
``optimised_strategies`` (best spec per family x level) and ``optimisation_trials`` (every
trial), both replaced atomically in one batch; the same inputs and studies give the same bytes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field

import pandas as pd

from alphatwin_pipelines.backtest import CostModel
from alphatwin_pipelines.calendar import lookback_start
from alphatwin_pipelines.alpha.scores import prediction_inputs
from alphatwin_pipelines.cluster import run_tasks
from alphatwin_pipelines.optimise.batched import BATCH_SEED_RULE, DEFAULT_BATCH_SIZE
from alphatwin_pipelines.optimise.objective import portfolio_metrics
from alphatwin_pipelines.optimise.progress import Countdown, ProgressLogger
from alphatwin_pipelines.optimise.search import make_evaluator, search
from alphatwin_pipelines.optimise.shortlist import Shortlist, select_shortlist
from alphatwin_pipelines.optimise.study import StudyResult, default_storage_url, open_storage, study_name
from alphatwin_pipelines.partition_keys import session_key
from alphatwin_pipelines.reproducibility import content_hash, make_record, read_window_bars
from alphatwin_pipelines.schema import frame_to_arrow
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.strategies import MAX_LEVEL, Indicators, MarketArrays, StrategySpec, complexity_score
from alphatwin_pipelines.strategies.families import release_caches
from alphatwin_pipelines.strategies.spec import ALL_FAMILIES, BOOK_FAMILIES
from alphatwin_pipelines.tables import CLEANED, FACTORS, OPTIMISATION_TRIALS, OPTIMISED, SCANNER, TOP_PAIRS

OBJECTIVE = "sharpe of the equal-weight portfolio, costs on, trades opened in the window (v1)"
OPTIMISED_COLUMNS = [
    "strategy_id", "family", "level", "complexity", "spec_json", "symbols_json", "start", "end", "n_trials",
    "n_complete", "n_pruned", "seed", "study_name", "is_sharpe", "is_sortino", "is_cagr", "is_max_drawdown",
    "is_trades", "scanner_partition", "record_json"]
TRIAL_COLUMNS = ["strategy_id", "family", "level", "trial_number", "state", "params_json", "sharpe"]


@dataclass(frozen=True)
class OptimisationConfig:
    """The research defaults: 100 symbols, up to 10 years in sample, 500 trials per family x level.

    ``make run`` passes a small demo configuration instead (config/demo_research.yaml).
    """

    families: tuple[str, ...] = ALL_FAMILIES
    levels: tuple[int, ...] = tuple(range(MAX_LEVEL + 1))
    # Levels studied for the book families (cross-sectional, pairs). Level 0 only by default keeps
    # the run's study count near the per-symbol families'; raise it for research.
    book_levels: tuple[int, ...] = (0,)
    n_pairs: int = 5  # the pairs family trades the best-ranked top_pairs of the scanner session
    n_trials: int = 500
    seed: int = 42
    shortlist_size: int = 100
    segment_sector: str | None = None  # only symbols of this sector (as in scanner_results.sector)
    segment_symbols: tuple[str, ...] | None = None  # only these symbols (intersected with the shortlist)
    train_years: float = 10.0  # up to: a shorter history gives a shorter window
    warmup_sessions: int = 320  # covers the longest lookback (vol_window 60 + the 252-session rank)
    batch_size: int = DEFAULT_BATCH_SIZE  # trials asked and evaluated together (optimise.batched)
    costs: CostModel = field(default_factory=CostModel)

    def __post_init__(self):
        unknown = sorted(set(self.families) - set(ALL_FAMILIES))
        if unknown or not self.families:
            raise ValueError(f"unknown strategy families {unknown or '(none given)'}; choose from {list(ALL_FAMILIES)}")
        if self.n_pairs < 1:
            raise ValueError(f"n_pairs must be at least 1, got {self.n_pairs}")
        bad = sorted(lv for lv in (*self.levels, *self.book_levels) if not 0 <= int(lv) <= MAX_LEVEL)
        if bad or not self.levels:
            raise ValueError(f"levels must be within 0..{MAX_LEVEL}, got {bad or 'none'}")
        if self.n_trials < 1 or self.shortlist_size < 1 or self.train_years <= 0 or self.batch_size < 1:
            raise ValueError("n_trials, shortlist_size and batch_size must be >= 1 and train_years > 0")


@dataclass
class OptimisationReport:
    strategies: pd.DataFrame
    trials: pd.DataFrame
    shortlist: Shortlist
    start: pd.Timestamp
    end: pd.Timestamp
    study_seconds: dict[str, float]
    trials_run: int
    seconds: float

    def curve(self) -> pd.DataFrame:
        """In-sample Sharpe against complexity: family, level, complexity, is_sharpe."""
        return self.strategies[["family", "level", "complexity", "is_sharpe"]].copy()


def select_pairs(store: TableStore, session: pd.Timestamp, n: int) -> tuple[tuple[str, str], ...]:
    """The ``n`` best-ranked pairs of ``top_pairs`` on the scanner session (pair_rank order)."""
    try:
        rows = store.read_partitions(TOP_PAIRS, session, session, columns=["pair_rank", "symbol_a", "symbol_b"])
    except FileNotFoundError:
        rows = pd.DataFrame(columns=["pair_rank", "symbol_a", "symbol_b"])
    if rows.empty:
        raise ValueError(f"{TOP_PAIRS} has no pair on {session:%Y-%m-%d}, so the pairs family has nothing to trade: "
                         f"materialise the scanner for that session or drop 'pairs' from the optimised families")
    rows = rows.sort_values(["pair_rank", "symbol_a", "symbol_b"], kind="stable").head(int(n))
    return tuple((str(a), str(b)) for a, b in zip(rows["symbol_a"], rows["symbol_b"]))


def study_plan(config: OptimisationConfig) -> list[tuple[str, int]]:
    levels = sorted({int(lv) for lv in config.levels})
    book_levels = sorted({int(lv) for lv in config.book_levels})
    return [(family, level) for family in config.families
            for level in (book_levels if family in BOOK_FAMILIES else levels)]


def _window(store: TableStore, end: pd.Timestamp, train_years: float, warmup: int):
    sessions = store.stored_sessions(CLEANED)
    sessions = sessions[sessions <= end]
    inside = sessions[sessions > end - pd.Timedelta(days=round(365.25 * train_years))]
    if len(inside) < 2:
        raise ValueError(f"{CLEANED} has fewer than two sessions in the {train_years}-year window ending "
                         f"{end:%Y-%m-%d}: materialise cleaned bars for that range first")
    warmup_start = lookback_start(inside[0], warmup, sessions)
    return inside[0], warmup_start, sessions[sessions >= warmup_start]


def _inputs(store: TableStore, sessions: pd.DatetimeIndex, scanner_partition) -> dict[str, str]:
    """One digest per input table over the files the study read (the per-file map is too long to store per row)."""
    span = f"{sessions[0]:%Y-%m-%d}..{sessions[-1]:%Y-%m-%d}"
    out = {}
    for table in (CLEANED, FACTORS):
        paths = [p for p in (store.partition_path(table, s) for s in sessions) if p.exists()]
        out[f"{table}[{span}]"] = content_hash(paths)
    out[f"{SCANNER}/{session_key(scanner_partition)}"] = content_hash([store.partition_path(SCANNER, scanner_partition)])
    return out


def optimise_strategies(store: TableStore, config: OptimisationConfig | None = None, storage_url: str | None = None,
                        logger=None, client=None) -> OptimisationReport:
    """Run (or resume) every configured study and replace both output tables.

    With a Dask ``client`` every study (family x level) is a task on the cluster against the
    shared Optuna storage; the trials and results are those of a run in process (each trial's
    sampler depends on the seed and the trials before it only). A study whose worker dies is
    run again elsewhere and resumes from the trials it had stored.
    """
    config = config or OptimisationConfig()
    t0 = time.perf_counter()
    shortlist = select_shortlist(store, config.shortlist_size, config.segment_sector, config.segment_symbols)
    end = shortlist.scanner_partition
    start, warmup_start, sessions = _window(store, end, config.train_years, config.warmup_sessions)
    bars = read_window_bars(store, shortlist.symbols, warmup_start, end, as_of=end)
    market = MarketArrays.from_bars(bars, price="adj")
    inputs = _inputs(store, sessions, end)
    costs = asdict(config.costs)
    basis = {"symbols": list(market.symbols), "start": f"{start:%Y-%m-%d}", "end": f"{end:%Y-%m-%d}",
             "warmup_start": f"{warmup_start:%Y-%m-%d}", "inputs": inputs, "costs": costs, "seed": config.seed,
             "batch_size": config.batch_size, "objective": OBJECTIVE}
    key = hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()
    url = storage_url or default_storage_url(store.data_dir)
    pairs, pair_market, pair_key = (), None, key
    if "pairs" in config.families:
        # The pairs trade their own symbols (top_pairs of the scanner session), not the shortlist.
        pairs = select_pairs(store, end, config.n_pairs)
        pair_symbols = sorted({s for pair in pairs for s in pair})
        pair_market = MarketArrays.from_bars(read_window_bars(store, pair_symbols, warmup_start, end, as_of=end),
                                             price="adj")
        pair_key = hashlib.sha256(json.dumps({**basis, "symbols": pair_symbols, "pairs": pairs},
                                             sort_keys=True).encode()).hexdigest()
    planned = study_plan(config)
    if "ml_rank" in config.families:
        from alphatwin_pipelines.alpha.scores import with_ml_scores

        market, planned = with_ml_scores(store, market, planned, sessions[sessions >= start], logger)
    plan = [_Study(number, len(planned), family, level, study_name(family, level, pair_key if family == "pairs" else key))
            for number, (family, level) in enumerate(planned, start=1)]
    # one indicator cache per market for every study (the levels share their filters); on a cluster, one per worker
    shared = _Studies(market, Indicators(market), start, config, url,
                      {k: basis[k] for k in ("start", "end", "seed", "batch_size")}, pairs, pair_market,
                      Indicators(pair_market) if pair_market is not None else None)
    if client is not None:
        open_storage(url)  # the schema is created once, here, not raced by the workers' first studies
        if logger is not None and url.startswith("sqlite"):
            logger.warning("the Optuna storage is a SQLite file: every Dask worker must see the same file "
                           "(set ALPHATWIN_OPTUNA_STORAGE to PostgreSQL on a cluster of several machines)")
    # in process, each study also logs its trials as they run; a worker's lines would not reach this log
    run = _run_study if client is not None else functools.partial(_run_study, logger=logger)
    outcomes = run_tasks(run, plan, client, shared=shared, name="study", on_result=_StudiesProgress(logger, plan),
                         after=release_caches)
    rows, trial_frames, seconds, ran = [], [], {}, 0
    for study, (result, spec, metrics) in zip(plan, outcomes):
        family, level, name = study.family, study.level, study.name
        study_market = shared.market_for(family)[0]
        seconds[name], ran = result.seconds, ran + result.ran
        study_inputs = {**inputs, **prediction_inputs(store, sessions)} if family == "ml_rank" else inputs
        record = make_record(spec, study_market.symbols, start, end, {"sampler": config.seed, "batch_size": config.batch_size,
                                                                      "per_batch": BATCH_SEED_RULE},
                             study_inputs, config.costs, warmup_start=f"{warmup_start:%Y-%m-%d}", as_of=f"{end:%Y-%m-%d}",
                             study_name=name, objective=OBJECTIVE, scanner_partition=session_key(end),
                             best_trial=result.best_trial)
        sid = spec.spec_hash()
        rows.append({"strategy_id": sid, "family": family, "level": level, "complexity": complexity_score(spec),
                     "spec_json": spec.to_json(), "symbols_json": json.dumps(list(study_market.symbols)),
                     "start": start, "end": end, "n_trials": result.n_trials, "n_complete": result.n_complete,
                     "n_pruned": result.n_pruned, "seed": config.seed, "study_name": name,
                     "is_sharpe": metrics["objective"], "is_sortino": metrics["sortino"], "is_cagr": metrics["cagr"],
                     "is_max_drawdown": metrics["max_drawdown"], "is_trades": metrics["trades"],
                     "scanner_partition": session_key(end), "record_json": json.dumps(record, sort_keys=True)})
        trial_frames.append(result.trials.assign(strategy_id=sid, family=family, level=level)[TRIAL_COLUMNS])
    strategies = pd.DataFrame(rows, columns=OPTIMISED_COLUMNS).astype(
        {"level": "int64", "n_trials": "int64", "n_complete": "int64", "n_pruned": "int64", "seed": "int64",
         "start": "datetime64[ns]", "end": "datetime64[ns]"})
    trials = pd.concat(trial_frames, ignore_index=True).astype({"level": "int64", "trial_number": "int64"})
    with store.batch():
        store.write_table(OPTIMISED, frame_to_arrow(strategies))
        store.write_table(OPTIMISATION_TRIALS, frame_to_arrow(trials))
    return OptimisationReport(strategies, trials, shortlist, start, end, seconds, ran, time.perf_counter() - t0)


@dataclass
class _Studies:
    """What every study of a run shares: sent once to each worker."""

    market: MarketArrays
    indicators: Indicators
    start: pd.Timestamp
    config: OptimisationConfig
    url: str
    user_attrs: dict
    pairs: tuple = ()
    pair_market: MarketArrays | None = None
    pair_indicators: Indicators | None = None

    def market_for(self, family: str) -> tuple[MarketArrays, Indicators]:
        """The pairs family trades its own symbols; every other family the shortlist."""
        if family == "pairs":
            return self.pair_market, self.pair_indicators
        return self.market, self.indicators


@dataclass(frozen=True)
class _Study:
    number: int
    of: int
    family: str
    level: int
    name: str

    @property
    def label(self) -> str:
        return f"study {self.number}/{self.of} {self.family} L{self.level}"


def _run_study(shared: _Studies, study: _Study, logger=None) -> tuple[StudyResult, StrategySpec, dict]:
    """One study run or resumed to the budget, its best spec and that spec's in-sample metrics (a task on a cluster)."""
    config = shared.config
    market, indicators = shared.market_for(study.family)
    pairs = shared.pairs if study.family == "pairs" else ()
    progress = ProgressLogger(logger, study.label, config.n_trials, lines=2) if logger else None
    evaluator = make_evaluator(market, study.family, study.level, shared.start, config.costs, indicators, pairs)
    result = search(market, study.family, study.level, shared.start, config.n_trials, config.seed,
                    batch_size=config.batch_size, costs=config.costs, storage_url=shared.url, name=study.name,
                    indicators=indicators, progress=progress, evaluator=evaluator,
                    user_attrs={**shared.user_attrs, "symbols": list(market.symbols)})
    spec = StrategySpec(study.family, result.best_params, study.level, pairs)
    metrics = portfolio_metrics(spec, market, shared.start, config.costs, indicators)
    return result, spec, metrics


class _StudiesProgress:
    """A line per finished study (in completion order on a cluster) with the time left for the rest."""

    def __init__(self, logger, plan: list[_Study]):
        self.logger, self.plan, self.countdown = logger, plan, Countdown(len(plan))

    def __call__(self, index: int, outcome) -> None:
        done = self.countdown.tick()
        if self.logger is not None:
            self.logger.info(f"{self.plan[index].label} done: best Sharpe {outcome[0].best_value:.3f} of "
                             f"{outcome[0].n_trials} trials; studies {done}")
