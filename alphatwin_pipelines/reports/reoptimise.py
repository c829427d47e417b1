"""Walk-forward that re-optimises: each window runs the study's optimiser on its training slice only.

For every window (rolling or anchored, :func:`~alphatwin_pipelines.stats.walk_forward_windows`):

1. **train**: :func:`optimise_window` runs the optimiser with the window's own trial budget on
   the market arrays cut at the train end (``market.select(end=train_end)``): no price after it
   exists for the study, not even for indicators. Earlier sessions only warm indicators up, as
   in the in-sample study. The sampler seed is :func:`window_seed` (validation seed, window).
2. **purge and embargo**: the test window starts ``purge + embargo`` sessions after the train
   end; ``purge = longest_lookback + holding_horizon`` of the strategy's spec (the study's best:
   ``strategies.longest_lookback`` / ``holding_horizon``), ``embargo`` is a setting.
3. **test**: the chosen parameters trade the test window from flat: decisions before its first
   session are dropped (as the objective drops those before its window), so a window's returns
   come from its own parameters only. All windows run in one simulation; signals are causal, so
   the returns up to a test window's end never depend on later prices.

The out-of-sample stream is the test windows' returns, stitched. :func:`parameter_stability`
and the windows' in-sample Sharpes (their studies' best values) feed the report's walk-forward
efficiency and parameter-stability figures.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from alphatwin_pipelines.backtest import CostModel
from alphatwin_pipelines.reports.portfolio import BookReturns, simulate_portfolios
from alphatwin_pipelines.strategies import (
    Indicators, MarketArrays, Signals, StrategySpec, generate, holding_horizon, longest_lookback, search_space,
)
from alphatwin_pipelines.strategies.families import PrefixIndicators
from alphatwin_pipelines.stats import sharpe_ratio, walk_forward_windows
from alphatwin_pipelines.stats.walk_forward import Window

WF_MODES = ("rolling", "anchored")


def window_seed(seed: int, index: int) -> int:
    """The sampler seed of walk-forward window ``index`` (a stable 32-bit hash of both)."""
    digest = hashlib.sha256(f"walk-forward:{int(seed)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


@functools.lru_cache(maxsize=1)
def _scratch_url() -> str:
    """A per-process SQLite file for window studies when no storage is configured (removed at exit)."""
    folder = Path(tempfile.mkdtemp(prefix="alphatwin-wf-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return f"sqlite:///{folder / 'optuna.db'}"


def _market_key(market: MarketArrays, family: str, level: int, start, costs: CostModel, seed: int, pairs=()) -> str:
    """A content hash of everything a window study's trials depend on (its name: reuse is always valid)."""
    h = hashlib.sha256()
    for name in ("open", "high", "low", "close", "volume"):
        h.update(np.ascontiguousarray(getattr(market, name)).tobytes())
    h.update(market.dates.asi8.tobytes())
    h.update(json.dumps([list(market.symbols), family, int(level), f"{pd.Timestamp(start):%Y-%m-%d}",
                         asdict(costs), int(seed), [list(p) for p in pairs]], sort_keys=True, default=str).encode())
    return h.hexdigest()


def optimise_window(market: MarketArrays, family: str, level: int, start, n_trials: int, seed: int,
                    costs: CostModel, storage_url: str | None = None, pairs=(), indicators: Indicators | None = None):
    """THE call into the optimiser for a walk-forward window: a seeded, batched study (``optimise.search``,
    as the in-sample studies) of ``n_trials`` on ``market``.

    ``market`` must already be cut at the train end. The study is named by a content hash of its
    inputs, so a stored study is resumed (topped up) only when its trials are the ones this call
    would run. ``storage_url`` None: a per-process scratch SQLite file. ``indicators``: a cache of
    ``market`` (a :class:`~alphatwin_pipelines.strategies.families.PrefixIndicators` shares one
    between the windows). Returns a ``StudyResult``.
    """
    from alphatwin_pipelines.optimise import study_name
    from alphatwin_pipelines.optimise.batched import DEFAULT_BATCH_SIZE
    from alphatwin_pipelines.optimise.search import make_evaluator, search

    key = _market_key(market, family, level, start, costs, seed, pairs)
    evaluator = make_evaluator(market, family, level, start, costs, indicators=indicators, pairs=tuple(pairs))
    return search(market, family, level, start, int(n_trials), int(seed), batch_size=DEFAULT_BATCH_SIZE, costs=costs,
                  storage_url=storage_url or _scratch_url(), name=study_name(family, level, f"wf{key}"),
                  evaluator=evaluator)


def purge_sessions(spec: StrategySpec) -> tuple[int, int]:
    """``(longest lookback, holding horizon)`` of ``spec`` in sessions; their sum is the purge."""
    return int(longest_lookback(spec)), int(holding_horizon(spec))


@dataclass
class WalkForwardRun:
    windows: pd.DataFrame  # per window: dates, trials, chosen params, train (best trial) and test Sharpe
    specs: list[StrategySpec]  # the spec chosen in each window
    book: BookReturns  # returns and exposure, column k: window k's spec trading from flat at its test start
    oos_returns: pd.Series  # the test windows' returns, stitched
    trial_sharpes: np.ndarray  # every finished window trial's Sharpe (NaN when pruned)
    n_trials: int  # finished trials over all windows
    lookback: int
    horizon: int
    embargo: int
    mode: str
    needed: int = 0  # sessions the first window needs (train + purge + embargo + 1)
    available: int = 0
    splits: list = field(default_factory=list)  # the stats.Window of each row of ``windows``
    accounts: pd.DataFrame = field(default_factory=pd.DataFrame)  # each symbol's exposure, test windows stitched

    @property
    def purge(self) -> int:
        return self.lookback + self.horizon

    def summary(self) -> "WalkForwardRun":
        """This run without its per-session frames (``book``, ``accounts``): the windows, choices,
        stitched returns and trial counts, a few hundred KB where the frames are MBs. What the
        DSR's counts and the progress lines read, and what a report keeps once its page is written."""
        none = pd.DataFrame(index=self.book.returns.index[:0])
        return replace(self, book=BookReturns(none, none, none, none), accounts=pd.DataFrame())


def oos_signals(specs: list[StrategySpec], windows: list[Window], market: MarketArrays,
                indicators: Indicators | None = None) -> dict:
    """``{window index: signals}``: each window's spec on ``market``, no decision before its test start
    (``indicators``: a cache of ``market`` to read and fill)."""
    from alphatwin_pipelines.optimise.objective import KERNEL_FAMILIES, window_signals
    from alphatwin_pipelines.optimise.signals import compiled_state

    from alphatwin_pipelines.strategies import BOOK_FAMILIES, generate_book, state_signals

    indicators, out = Indicators(market) if indicators is None else indicators, {}
    for s, w in zip(specs, windows):
        if s.family in BOOK_FAMILIES:  # target weights, decided from the test start only
            out[w.index] = generate_book(s, market, indicators, first_row=w.test_positions.start)
            continue
        # The compiled state equals generate's (tests/test_report_streams.py), in one pass.
        signals = (state_signals(*compiled_state(s, indicators), market) if s.family in KERNEL_FAMILIES
                   else generate(s, market, indicators))
        cut = window_signals(signals, w.test_positions.start)
        # Keep the generated labels (a family's columns need not be one per symbol).
        symbols = signals.symbol_index if signals.symbol_index is not None else np.arange(signals.shape[1])
        columns = signals.columns if signals.columns is not None else market.columns[symbols]
        out[w.index] = Signals._owned(cut.entries, cut.exits, cut.size, market.dates, columns, symbols,
                                      resolved=False)
    return out


def _empty_book(market: MarketArrays) -> BookReturns:
    frame = pd.DataFrame(index=market.dates)
    return BookReturns(frame, frame, frame, frame)


def reoptimise_walk_forward(spec: StrategySpec, market: MarketArrays, train: int, test: int, n_trials: int,
                            seed: int, costs: CostModel, embargo: int = 0, mode: str = "rolling",
                            storage_url: str | None = None) -> WalkForwardRun:
    """The walk-forward of the module docstring for ``spec``'s family and level on ``market``.

    When the history is too short for one window the run has no windows (``windows`` empty,
    ``needed`` > ``available``) and the caller reports it as a failure naming both numbers.
    """
    if mode not in WF_MODES:
        raise ValueError(f"walk-forward mode must be one of {WF_MODES}, got {mode!r}")
    lookback, horizon = purge_sessions(spec)
    needed, available = int(train) + lookback + horizon + int(embargo) + 1, len(market.dates)
    run = dict(lookback=lookback, horizon=horizon, embargo=int(embargo), mode=mode, needed=needed,
               available=available)
    if needed > available:
        return WalkForwardRun(pd.DataFrame(columns=list(WINDOW_COLUMNS)), [], _empty_book(market),
                              pd.Series(dtype=float, name="return"), np.array([]), 0, **run)
    windows = walk_forward_windows(market.dates, train, test, anchored=mode == "anchored",
                                   purge=lookback + horizon, embargo=embargo)
    specs, studies, shared = [], [], {}
    # Latest window first: every earlier window's market is a prefix of its market, so each window
    # reads the indicators the later ones computed (PrefixIndicators) and computes only new ones.
    for w in reversed(windows):
        cut = market.select(end=w.train_end)
        indicators = PrefixIndicators(cut, shared)
        result = optimise_window(cut, spec.family, spec.level, w.train_start, n_trials, window_seed(seed, w.index),
                                 costs, storage_url, pairs=spec.pairs, indicators=indicators)
        specs.append(StrategySpec(spec.family, result.best_params, spec.level, spec.pairs))
        studies.append(result)
        indicators.clear()
    # Emptied, not only dropped: a reference to a cache that outlives its call (a study's frames
    # were seen kept alive after it returned) would otherwise hold up to the budget of arrays.
    shared.clear()
    specs.reverse()
    studies.reverse()
    book, accounts = _test_books(specs, windows, market, costs)
    oos = pd.concat([book.returns[w.index].iloc[w.test_positions] for w in windows]).rename("return")
    rows = [{"window": w.index, "train_start": w.train_start, "train_end": w.train_end,
             "test_start": w.test_start, "test_end": w.test_end, "candidate": w.index, "trials": r.n_trials,
             "train_sharpe": r.best_value, "test_sharpe": float(sharpe_ratio(book.returns[w.index].iloc[w.test_positions])),
             "params": json.dumps(dict(s.params), sort_keys=True)}
            for w, r, s in zip(windows, studies, specs)]
    sharpes = np.concatenate([r.trials.loc[r.trials["state"].isin(("COMPLETE", "PRUNED")), "sharpe"].to_numpy(float)
                              for r in studies])
    return WalkForwardRun(pd.DataFrame(rows, columns=list(WINDOW_COLUMNS)), specs, book, oos, sharpes,
                          int(sum(r.n_trials for r in studies)), **run, splits=windows, accounts=accounts)


#: windows simulated together for the test books: all of a strategy's 30-40 windows at once made
#: (T, windows x symbols) vectorbt arrays of ~75 MB each, ~1.5 GB at the peak (benchmarks/README.md).
WINDOW_CHUNK = 4


def _test_books(specs: list[StrategySpec], windows: list[Window], market: MarketArrays,
                costs: CostModel) -> tuple[BookReturns, pd.DataFrame]:
    """Each window's spec trading from its test start: the books' returns and exposure (column k:
    window k), and each symbol's exposure over the test windows, stitched. Windows are independent
    accounts, so simulating them ``WINDOW_CHUNK`` at a time gives the values of one simulation;
    only the test windows' accounts are kept (the per-symbol frames of every window would be held
    per strategy until every report is written: the stage runs all walk-forwards first)."""
    indicators, returns, exposure, accounts = Indicators(market), [], [], []
    for lo in range(0, len(windows), WINDOW_CHUNK):
        part = windows[lo:lo + WINDOW_CHUNK]
        book = simulate_portfolios(oos_signals(specs[lo:lo + WINDOW_CHUNK], part, market, indicators), market, costs)
        returns.append(book.returns)
        exposure.append(book.exposure)
        accounts += [book.symbol_exposure[w.index].iloc[w.test_positions] for w in part]
    none = pd.DataFrame(index=market.dates)
    return BookReturns(pd.concat(returns, axis=1), pd.concat(exposure, axis=1), none, none), pd.concat(accounts)


WINDOW_COLUMNS = ("window", "train_start", "train_end", "test_start", "test_end", "candidate", "trials",
                  "train_sharpe", "test_sharpe", "params")


def walk_forward_efficiency(oos_sharpe: float, train_sharpes) -> float:
    """Out-of-sample Sharpe over the mean of the windows' in-sample (best-trial) Sharpes.

    1 means the walk-forward kept all the Sharpe its optimisations found; near 0 or negative,
    what the windows' studies found did not carry into the following sessions. NaN when the
    in-sample mean is not positive (the ratio would not mean anything).
    """
    ins = np.asarray(pd.to_numeric(pd.Series(train_sharpes), errors="coerce"), dtype=float)
    ins = ins[np.isfinite(ins)]
    if not len(ins) or not math.isfinite(oos_sharpe) or ins.mean() <= 0:
        return math.nan
    return float(oos_sharpe / ins.mean())


def parameter_stability(specs: list[StrategySpec]) -> tuple[pd.DataFrame, float]:
    """Per parameter, how much the windows agree; and the mean of the per-parameter scores.

    Score per parameter, 1 when every window chose the same value and about 0 when the choices
    are as spread as uniform random draws from the search space:
    numbers ``1 - std / std_uniform`` with ``std_uniform = (high - low) / sqrt(12)``, clipped to
    [0, 1]; categories ``(modal share - 1/k) / (1 - 1/k)`` over ``k`` choices. The table also
    shows the coefficient of variation (std / |mean|) and the modal value's share.
    NaN with fewer than two windows.
    """
    columns = ["parameter", "modal_value", "modal_share", "cv", "stability"]
    if len(specs) < 2:
        return pd.DataFrame(columns=columns), math.nan
    space = search_space(specs[0].family, specs[0].level)
    rows = []
    for name, (low, high, kind) in space.items():
        values = pd.Series([s.params[name] for s in specs])
        counts = values.value_counts(sort=True)
        share = float(counts.iloc[0]) / len(values)
        if kind == "categorical":
            k = len(low)
            cv, score = math.nan, (share - 1 / k) / (1 - 1 / k) if k > 1 else 1.0
        else:
            x = values.to_numpy(dtype=float)
            std = float(np.std(x))
            cv = std / abs(x.mean()) if x.mean() != 0 else math.nan
            spread = (float(high) - float(low)) / math.sqrt(12.0)
            score = float(np.clip(1.0 - std / spread, 0.0, 1.0)) if spread > 0 else 1.0
        rows.append({"parameter": name, "modal_value": str(counts.index[0]), "modal_share": share, "cv": cv,
                     "stability": float(score)})
    table = pd.DataFrame(rows, columns=columns)
    return table, float(table["stability"].mean()) if len(table) else math.nan
