"""Strategy library: parameterised signal families over aligned market arrays.

No Dagster, no vectorbt (the backtest engine imports vectorbt lazily); NumPy + TA-Lib only.

Public API::

    market = MarketArrays.from_bars(load("cleaned_ohlcv"), price="adj")
    spec = StrategySpec("ma_cross", {"fast": 20, "slow": 50}, level=3)
    sig = generate(spec, market)            # Signals(entries, exits, size), (T, N) arrays
    spec.to_json(); StrategySpec.from_json(text); spec.spec_hash()
    search_space("ma_cross", 3)             # {name: (low, high, "int"|"float") | (choices, None, "categorical")}
    complexity_score(spec)
    book = generate_book(StrategySpec("xs_momentum", {"top_k": 5}), market)   # book families
    book.weights                            # (T, N) signed targets on decision rows, NaN = hold

``generate`` returns *resolved* signals: ``entries[t]`` is True exactly where the long-only
position opens at the close of t and ``exits[t]`` where it closes (stops included), and
``size`` is the equity fraction held from each entry. Signals at t use data <= t only, and
the market arrays are never modified. Level features are documented in
:mod:`alphatwin_pipelines.strategies.spec`, family rules in :mod:`.families`, filters,
stops and the state machine in :mod:`.filters`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from alphatwin_pipelines.strategies import filters as flt
from alphatwin_pipelines.strategies.families import FAMILY_RULES, Indicators
from alphatwin_pipelines.strategies.market import MarketArrays, Signals
from alphatwin_pipelines.strategies.books import BookTargets, generate_book
from alphatwin_pipelines.strategies.spec import (
    ALL_FAMILIES,
    BOOK_FAMILIES,
    FAMILIES,
    LEVELS,
    MAX_LEVEL,
    StrategySpec,
    all_level_specs,
    complexity_breakdown,
    complexity_score,
    default_params,
    expand_grid,
    holding_horizon,
    level_features,
    level_table,
    longest_lookback,
    search_space,
    suggest_params,
)

__all__ = [
    "ALL_FAMILIES", "BOOK_FAMILIES", "BookTargets", "generate_book", "FAMILIES", "LEVELS", "MAX_LEVEL", "Indicators", "MarketArrays", "Signals", "StrategySpec",
    "all_level_specs", "complexity_breakdown", "complexity_score", "default_params", "expand_grid",
    "generate", "generate_state", "holding_horizon", "level_features", "level_table", "longest_lookback",
    "sample_params", "search_space", "state_signals", "suggest_params",
]


def generate_state(spec: StrategySpec, market: MarketArrays, indicators: Indicators | None = None):
    """The position state after each close and the held size: ``(state, held_size)``, (T, N)."""
    ind = indicators if indicators is not None else Indicators(market)
    if ind.market is not market:
        raise ValueError("indicators were built for another market")
    p = spec.params
    feats = set(spec.features)
    entries, exits = FAMILY_RULES[spec.family](ind, p)
    entries = entries.copy()
    exits = exits.copy()
    if "trend_filter" in feats:
        entries &= flt.trend_ok(ind, p["trend_window"])
    if "vol_filter" in feats:
        entries &= flt.vol_ok(ind, p["vol_window"], p["vol_pct"])
    if "breadth_regime" in feats:
        entries &= flt.breadth_ok(ind, p["breadth_window"], p["breadth_min"])
    if "index_regime" in feats:
        entries &= flt.index_ok(ind, p["index_window"])
    if "trend_exit" in feats:
        with np.errstate(invalid="ignore"):
            exits |= market.close < ind.sma(p["trend_window"])
    if "regime_exit" in feats:
        exits |= ~flt.index_ok(ind, p["index_window"]) & np.isfinite(market.close)
    if "vol_sizing" in feats:
        size = flt.vol_target_size(ind, p["target_vol"], p["sizing_window"])
    else:
        size = np.ones(market.shape)
    stops = {}
    if "stop_loss" in feats:
        stops["stop_loss"] = p["stop_loss"]
    if "take_profit" in feats:
        stops["take_profit"] = p["take_profit"]
    if "trailing_stop" in feats:
        stops["trail_stop"] = p["trail_stop"]
    if "time_stop" in feats:
        stops["max_hold"] = p["max_hold"]
    if stops:
        return flt.resolve_with_stops(entries, exits, size, market.open, market.close, **stops)
    return flt.resolve(entries, exits, size)


def generate(spec: StrategySpec, market: MarketArrays, indicators: Indicators | None = None) -> Signals:
    """Resolved long-only signals of ``spec`` on ``market`` (see the module docstring).

    Pass one :class:`Indicators` for many specs on the same market to share indicators.
    """
    return state_signals(*generate_state(spec, market, indicators), market)


def state_signals(state: np.ndarray, held: np.ndarray, market: MarketArrays) -> Signals:
    """Resolved signals of a position state and held size (``generate_state``'s or the compiled
    ``optimise.signals.state_nb``'s: the same arrays)."""
    entries, exits = flt.transitions(state)
    size = np.where(state, held, 0.0)
    return Signals._owned(entries, exits, size, market.dates, market.columns,
                          np.arange(market.shape[1]), resolved=True)


def sample_params(family: str, level: int, n: int, seed: int) -> list[dict]:
    """``n`` parameter dicts drawn uniformly from :func:`search_space` with a seeded generator."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(int(n)):
        params = {}
        for name, (low, high, kind) in search_space(family, level).items():
            if kind == "int":
                params[name] = int(rng.integers(low, high + 1))
            elif kind == "float":
                params[name] = float(rng.uniform(low, high))
            else:
                params[name] = low[int(rng.integers(len(low)))]
        out.append(params)
    return out
