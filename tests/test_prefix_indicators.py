"""Walk-forward windows share one indicator cache (strategies.families.PrefixIndicators): a window's
market is the full market cut at its train end, and every cached indicator of the cut market must
equal the full market's cut to the same rows, bit for bit (else a window would see later prices)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines.strategies import MarketArrays
from alphatwin_pipelines.strategies import filters as flt
from alphatwin_pipelines.strategies.books import momentum_score
from alphatwin_pipelines.strategies.families import Indicators, PrefixIndicators, adx_parts, relative_volume


def gappy_market(n_sessions: int = 400, n_symbols: int = 5, seed: int = 3) -> MarketArrays:
    rng = np.random.default_rng(seed)
    close = 40.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, (n_sessions, n_symbols)), axis=0))
    open_ = close * np.exp(rng.normal(0.0, 0.005, close.shape))
    volume = rng.uniform(5e5, 2e6, close.shape)
    fields = dict(open=open_, high=np.maximum(open_, close) * 1.01, low=np.minimum(open_, close) * 0.99,
                  close=close, volume=volume)
    for arr in fields.values():  # a late listing, a delisting and a gap: per_column's compressed paths
        arr[:90, 1] = np.nan
        arr[300:, 2] = np.nan
        arr[150:170, 3] = np.nan
    return MarketArrays(**fields, dates=pd.bdate_range("2019-01-02", periods=n_sessions),
                        symbols=tuple(f"S{i}" for i in range(n_symbols)))


def every_indicator(ind: Indicators) -> dict:
    """Every array the indicator cache holds for the families, filters and books."""
    out = {"sma": ind.sma(20), "ema": ind.ema(30), "rsi": ind.rsi(14), "bb_lower": ind.bb_lower(20, 2.0),
           "roc": ind.roc(60), "prior_high": ind.prior_high(55), "prior_low": ind.prior_low(20),
           "rv": ind.realised_vol(21), "rel_volume": relative_volume(ind, 30), "vol_rank": flt.vol_rank(ind, 21),
           "breadth": flt.breadth(ind, 50), "ew_index": flt.equal_weight_index(ind), "index_ok": flt.index_ok(ind, 100),
           "xs_mom": momentum_score(ind, 120, 21)}
    out.update(zip(("adx", "plus_di", "minus_di"), adx_parts(ind, 14)))
    return out


MARKET = gappy_market()


@pytest.mark.parametrize("rows", [60, 170, 299, 301, 399])
def test_full_cache_prefix_equals_the_cut_market_cache(rows):
    full = every_indicator(Indicators(MARKET))
    cut_market = MARKET.select(end=MARKET.dates[rows - 1])
    cut = every_indicator(Indicators(cut_market))
    assert set(full) == set(cut)
    for name in full:
        assert cut[name].shape[0] == rows, name
        np.testing.assert_array_equal(full[name][:rows], cut[name], err_msg=name, strict=True)


def test_prefix_indicators_read_the_longer_windows_arrays_and_compute_the_rest():
    shared: dict = {}
    longest = MARKET.select(end=MARKET.dates[349])
    filled = PrefixIndicators(longest, shared)
    sma = filled.sma(20)
    shorter = PrefixIndicators(MARKET.select(end=MARKET.dates[199]), shared)
    reused = shorter.sma(20)
    assert np.shares_memory(reused, sma) and reused.shape[0] == 200 and not reused.flags.writeable
    fresh = every_indicator(Indicators(shorter.market))
    for name, value in every_indicator(shorter).items():
        np.testing.assert_array_equal(value, fresh[name], err_msg=name, strict=True)
    assert shared[("ema", 30)].shape[0] == 200  # computed by the shorter window, kept for shorter ones


class _Recording(Indicators):
    """Records the name of every indicator the families ask the cache for."""

    def __init__(self, market):
        super().__init__(market)
        self.names: set = set()

    def get(self, key, compute):
        self.names.add(key[0])
        return super().get(key, compute)


def test_every_indicator_a_family_caches_is_checked_causal_above():
    # A window reads a longer window's cached arrays cut to its rows; that is only sound for the
    # indicators the prefix test covers. A family that caches a new one fails here until it is added.
    from alphatwin_pipelines.optimise import PortfolioObjective
    from alphatwin_pipelines.strategies import FAMILIES, MAX_LEVEL, sample_params

    checked = _Recording(MARKET)
    every_indicator(checked)
    used = _Recording(MARKET)
    for family in FAMILIES:
        for level in range(MAX_LEVEL + 1):
            PortfolioObjective(MARKET, family, level, MARKET.dates[120], indicators=used).evaluate(
                sample_params(family, level, 2, seed=level))
    assert used.names and used.names <= checked.names, sorted(used.names - checked.names)


def test_a_cache_past_its_budget_drops_its_oldest_arrays_and_recomputes_them_equal(monkeypatch):
    from alphatwin_pipelines.strategies import families

    one = MARKET.close.nbytes  # every (T, N) indicator of MARKET
    monkeypatch.setattr(families, "INDICATOR_BUDGET", 3 * one)
    ind, shared = Indicators(MARKET), {}
    first = {w: ind.sma(w) for w in (5, 10, 15, 20, 25)}
    assert list(ind._cache) == [("sma", 15), ("sma", 20), ("sma", 25)] and ind.nbytes() <= 3 * one
    np.testing.assert_array_equal(ind.sma(5), first[5])  # computed again, to the same values
    assert list(ind._cache) == [("sma", 20), ("sma", 25), ("sma", 5)]
    prefix = PrefixIndicators(MARKET, shared)
    for w in (5, 10, 15, 20):
        prefix.sma(w)
    assert list(shared) == [("sma", 10), ("sma", 15), ("sma", 20)]  # the shared arrays keep the budget too
