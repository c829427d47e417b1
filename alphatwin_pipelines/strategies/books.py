"""Book families: one account across many symbols, long and short, as target weights.

==============  =====================================================================================
family          raw targets (decided at a close; the book engine fills them at the next open)
==============  =====================================================================================
xs_momentum     rank on ``close[t - skip] / close[t - lookback] - 1`` (each symbol's own bars),
                every ``rebalance`` sessions: long the top ``top_k`` or long top / short bottom
                (``mode``), see :mod:`.ranking`
xs_reversal     the same on ``-(close[t] / close[t - lookback] - 1)``: last period's losers long
ml_rank         rank on the alpha model's score of ``horizon`` (``alpha_predictions`` carried by
                ``market.scores``; the score of t is the prediction made at the close of t),
                every ``rebalance`` sessions, ``top_k`` and ``mode`` as above
pairs           each pair of ``spec.pairs`` (from the scanner's ``top_pairs``): the z-score state
                of :mod:`.pairs`, ``1 / n_pairs`` of equity gross per open pair
==============  =====================================================================================

The level ladder acts on the book through :mod:`.overlay`. :func:`generate_book` returns
:class:`BookTargets`: signed target weights (fractions of equity) on decision rows, NaN
elsewhere (hold). Use :func:`alphatwin_pipelines.backtest.book.simulate_book` to trade them.
Any (T, N) score matrix can drive :func:`score_book` (e.g. a model's scores).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import talib

from alphatwin_pipelines.strategies.families import Indicators, per_column
from alphatwin_pipelines.strategies.market import MarketArrays
from alphatwin_pipelines.strategies.overlay import apply_overlay
from alphatwin_pipelines.strategies.pairs import pair_units
from alphatwin_pipelines.strategies.ranking import rank_targets, rebalance_rows
from alphatwin_pipelines.strategies.spec import BOOK_FAMILIES, StrategySpec


@dataclass(frozen=True, eq=False)
class BookTargets:
    """Signed target weights (T, N) decided at each close; NaN = no new decision (hold)."""

    weights: np.ndarray
    dates: pd.DatetimeIndex
    symbols: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, int]:
        return self.weights.shape

    def after(self, first_row: int) -> "BookTargets":
        """The same targets with every decision before ``first_row`` dropped (flat until then)."""
        w = np.array(self.weights)
        w[:first_row] = np.nan
        return BookTargets(w, self.dates, self.symbols)


def _lagged_return(close: np.ndarray, lookback: int, skip: int) -> np.ndarray:
    r = talib.ROCP(close, timeperiod=lookback - skip)
    if skip:  # shifted down by skip bars; a symbol with no more than skip bars has no value yet
        shifted = np.full(r.size, np.nan)
        shifted[skip:] = r[: max(r.size - skip, 0)]
        r = shifted
    return r


def momentum_score(ind: Indicators, lookback: int, skip: int = 0) -> np.ndarray:
    """(T, N) ``close[t - skip] / close[t - lookback] - 1`` counted in each symbol's own bars."""
    return ind.get(("xs_mom", lookback, skip),
                   lambda: per_column(_lagged_return, ind.market.close, lookback=lookback, skip=skip))


def score_book(spec: StrategySpec, ind: Indicators, score: np.ndarray, first_row: int = 0) -> np.ndarray:
    """Rank ``score`` per the spec's ``top_k``, ``mode`` and ``rebalance``, then the ladder."""
    p = spec.params
    T, N = ind.market.shape
    raw = rank_targets(score, p["top_k"], p["mode"], p["rebalance"], first_row)
    held = pd.DataFrame(raw).ffill().fillna(0.0).to_numpy()
    decide = np.broadcast_to(rebalance_rows(T, p["rebalance"], first_row)[:, None], (T, N))
    ratio = np.ones((T, N, 1))
    legs = np.arange(N)[:, None]
    return apply_overlay(spec, ind, held, ratio, legs, decide)


def _pair_columns(spec: StrategySpec, market: MarketArrays) -> np.ndarray:
    index = {s: i for i, s in enumerate(market.symbols)}
    missing = sorted({s for pair in spec.pairs for s in pair} - set(index))
    if missing:
        raise ValueError(f"pairs strategy {spec.spec_hash()[:12]}: symbols {missing} of its pairs have no bars in "
                         "the market given; load cleaned bars for them (the symbols_json of the strategy)")
    return np.array([[index[a], index[b]] for a, b in spec.pairs], dtype=np.intp)


def pairs_book(spec: StrategySpec, ind: Indicators, first_row: int = 0) -> np.ndarray:
    p = spec.params
    legs = _pair_columns(spec, ind.market)
    state, ratio = pair_units(ind.market.close, legs, p["z_window"], p["entry_z"], p["exit_z"])
    state[:first_row] = 0.0
    raw = state / len(spec.pairs)
    decide = np.zeros(raw.shape, dtype=bool)
    decide[1:] = raw[1:] != raw[:-1]
    return apply_overlay(spec, ind, raw, ratio, legs, decide, loss_stop=p["pair_stop"], time_stop=p["hold_limit"])


def generate_book(spec: StrategySpec, market: MarketArrays, indicators: Indicators | None = None,
                  first_row: int = 0) -> BookTargets:
    """The book family's target weights on ``market``; nothing is decided before ``first_row``."""
    if spec.family not in BOOK_FAMILIES:
        raise ValueError(f"{spec.family!r} is not a book family ({list(BOOK_FAMILIES)}); use generate()")
    ind = indicators if indicators is not None else Indicators(market)
    if ind.market is not market:
        raise ValueError("indicators were built for another market")
    p = spec.params
    if spec.family == "xs_momentum":
        weights = score_book(spec, ind, momentum_score(ind, p["lookback"], p["skip"]), first_row)
    elif spec.family == "xs_reversal":
        weights = score_book(spec, ind, -momentum_score(ind, p["lookback"], 0), first_row)
    elif spec.family == "ml_rank":
        weights = score_book(spec, ind, market.score(p["horizon"]), first_row)
    else:
        weights = pairs_book(spec, ind, first_row)
    weights[:first_row] = np.nan
    return BookTargets(weights, market.dates, market.symbols)
