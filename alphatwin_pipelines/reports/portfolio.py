"""From per-symbol backtest columns to one strategy portfolio, plus the benchmarks it is judged against.

A strategy trades every symbol of its shortlist as an independent account, and its portfolio is
the equal-weight book rebalanced daily: the day's return is the mean of the symbols' returns
that session (symbols without a bar are left out; a session with none is flat). This is the
book the optimisation objective scores (``alphatwin_pipelines.optimise.objective``), so the
out-of-sample numbers here and the in-sample ones there measure the same thing.

Book families (cross-sectional ranks, pairs: :mod:`alphatwin_pipelines.strategies.books`) are one
account across the symbols, longs and shorts: their book is the book engine's account
(:func:`~alphatwin_pipelines.backtest.book.simulate_book`), its exposure the gross exposure and
its weights the signed position weights. ``spec_signals`` and ``simulate_portfolios`` take both
kinds, so validation treats every family alike.

Benchmarks run through the same engine and the same :class:`CostModel`:
buy-and-hold of the strategy's symbols, equal-weight buy-and-hold of the whole universe, and a
plain SMA 50/200 crossover on the strategy's symbols.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from alphatwin_pipelines.backtest import CostModel, run_backtest, simulate
from alphatwin_pipelines.backtest.book import simulate_book
from alphatwin_pipelines.strategies import Indicators, MarketArrays, Signals, StrategySpec, generate
from alphatwin_pipelines.strategies.books import BookTargets, generate_book
from alphatwin_pipelines.strategies.spec import BOOK_FAMILIES

SMA_BENCHMARK = StrategySpec("ma_cross", {"fast": 50, "slow": 200, "ma_type": "sma"}, 0)
BENCHMARK_NAMES = ("buy_and_hold", "equal_weight_universe", "sma_50_200")


@dataclass(frozen=True)
class BookReturns:
    """Per strategy (column k): the book's daily returns and exposures, plus each symbol's detail."""

    returns: pd.DataFrame  # (T, K) mean of the symbols' daily returns
    exposure: pd.DataFrame  # (T, K) mean of the symbols' exposures: the book's fraction in the market
    symbol_exposure: pd.DataFrame  # columns (param_set, symbol): each account's own exposure
    weights: pd.DataFrame  # columns (param_set, symbol): the book's weight in each symbol


def scale_costs(costs: CostModel, factor: float) -> CostModel:
    """The same cost model with fees, slippage and impact all multiplied by ``factor``."""
    return CostModel(fees_bps=costs.fees_bps * factor, slippage_bps=costs.slippage_bps * factor,
                     impact_k_bps=costs.impact_k_bps * factor, adv_window=costs.adv_window,
                     impact_notional=costs.impact_notional, borrow_bps=costs.borrow_bps * factor)


def equal_weight_book(result) -> BookReturns:
    """The equal-weight daily-rebalanced book of a backtest's columns, one per parameter set."""
    cols = result.returns.columns
    keys = np.asarray(cols.get_level_values(0) if isinstance(cols, pd.MultiIndex) else np.zeros(len(cols), dtype=int))
    groups = pd.unique(keys)
    r = result.returns.to_numpy()
    alive = np.isfinite(r)
    exposure = np.where(alive, result.exposure.to_numpy(), 0.0)
    means, exposures, counts = [], [], np.empty((len(r), len(cols)))
    for g in groups:
        mine = keys == g
        n = alive[:, mine].sum(axis=1)
        counts[:, mine] = np.maximum(n, 1)[:, None]
        means.append(np.where(n > 0, np.where(alive[:, mine], r[:, mine], 0.0).sum(axis=1) / np.maximum(n, 1), 0.0))
        exposures.append(exposure[:, mine].sum(axis=1) / np.maximum(n, 1))
    index = result.returns.index
    return BookReturns(returns=pd.DataFrame(np.column_stack(means), index=index, columns=groups),
                       exposure=pd.DataFrame(np.column_stack(exposures), index=index, columns=groups),
                       symbol_exposure=pd.DataFrame(exposure, index=index, columns=cols),
                       weights=pd.DataFrame(exposure / counts, index=index, columns=cols))


def spec_signals(specs: list[StrategySpec], market: MarketArrays, indicators=None) -> list[Signals | BookTargets]:
    """Each spec's signals (book families: target weights), sharing one indicator cache (``indicators``,
    an :class:`Indicators` of ``market``, to share it across calls); generate once, simulate under many costs."""
    indicators = Indicators(market) if indicators is None else indicators
    return [generate_book(spec, market, indicators) if spec.family in BOOK_FAMILIES
            else generate(spec, market, indicators) for spec in specs]


def account_books(parts: dict, market: MarketArrays, costs: CostModel) -> BookReturns:
    """Book targets ``{key: BookTargets}``: each key is one account (module docstring)."""
    results = {k: simulate_book(v, market, costs) for k, v in parts.items()}
    keys = list(results)
    index = market.dates
    cols = pd.MultiIndex.from_tuples([(k, s) for k in keys for s in market.symbols], names=["param_set", "symbol"])
    weights = np.column_stack([results[k].weights.to_numpy() for k in keys])
    return BookReturns(
        returns=pd.DataFrame({k: results[k].returns.to_numpy() for k in keys}, index=index, columns=keys),
        exposure=pd.DataFrame({k: results[k].gross.to_numpy() for k in keys}, index=index, columns=keys),
        symbol_exposure=pd.DataFrame(weights, index=index, columns=cols),
        weights=pd.DataFrame(weights, index=index, columns=cols))


def simulate_portfolios(parts: dict, market: MarketArrays, costs: CostModel) -> BookReturns:
    """Signals ``{key: Signals | BookTargets}`` simulated together, one book per key (the result's
    column labels, in the order given)."""
    books = {k: v for k, v in parts.items() if isinstance(v, BookTargets)}
    signals = {k: v for k, v in parts.items() if not isinstance(v, BookTargets)}
    done = []
    if signals:
        sig = Signals.concat(list(signals.values()), keys=list(signals), names=["param_set", "symbol"])
        done.append(equal_weight_book(simulate(sig, market, costs)))
    if books:
        done.append(account_books(books, market, costs))
    if len(done) == 1:
        return done[0]
    order = list(parts)

    def join(field: str, per_symbol: bool) -> pd.DataFrame:
        frame = pd.concat([getattr(d, field) for d in done], axis=1)
        if not per_symbol:
            return frame[order]
        return frame[[c for k in order for c in frame.columns if c[0] == k]]

    return BookReturns(returns=join("returns", False), exposure=join("exposure", False),
                       symbol_exposure=join("symbol_exposure", True), weights=join("weights", True))


def run_portfolios(specs: list[StrategySpec], market: MarketArrays, costs: CostModel) -> BookReturns:
    """Every spec on every symbol of ``market`` in one simulation, summed per spec (columns 0..K-1)."""
    return simulate_portfolios(dict(enumerate(spec_signals(specs, market))), market, costs)


def _hold_signals(market: MarketArrays) -> Signals:
    """Enter each symbol at its first close (fills at the next open) and never exit."""
    finite = np.isfinite(market.close)
    first = finite & ~np.vstack([np.zeros((1, finite.shape[1]), dtype=bool), np.logical_or.accumulate(finite)[:-1]])
    return Signals(first, np.zeros_like(first), 1.0, dates=market.dates, columns=market.columns)


def buy_and_hold(market: MarketArrays, costs: CostModel) -> pd.Series:
    """Every symbol bought at its first bar and held, through the same engine and costs as the strategies."""
    return equal_weight_book(run_backtest(_hold_signals(market), market, costs)).returns.iloc[:, 0]


def benchmark_returns(market: MarketArrays, universe: MarketArrays, costs: CostModel) -> pd.DataFrame:
    """Daily returns of the three benchmarks on ``market``'s dates (columns ``BENCHMARK_NAMES``)."""
    out = pd.DataFrame({
        "buy_and_hold": buy_and_hold(market, costs),
        "equal_weight_universe": buy_and_hold(universe, costs).reindex(market.dates),
        "sma_50_200": run_portfolios([SMA_BENCHMARK], market, costs).returns.iloc[:, 0],
    })
    return out[list(BENCHMARK_NAMES)]
