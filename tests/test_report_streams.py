"""The validation report's compiled paths equal the definitions they replace.

* the PBO's trial return streams and the cost re-runs (``optimise.fast.portfolio_streams``: the
  optimiser's compiled signal pass and kernel) against the vectorbt books of ``reports.portfolio``,
  every per-symbol family x level, on a market with late listings, delistings, halts and missing opens;
* the compiled position state (``optimise.signals.compiled_state``) against ``generate_state``;
* the volatility filter's compiled rolling rank against pandas' rolling form of its definition.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines.backtest import CostModel
from alphatwin_pipelines.optimise.fast import portfolio_streams
from alphatwin_pipelines.optimise.objective import KERNEL_FAMILIES
from alphatwin_pipelines.optimise.signals import compiled_state
from alphatwin_pipelines.reports.evaluate import ValidationSettings, cost_sensitivity, stitch, trial_returns
from alphatwin_pipelines.reports.portfolio import scale_costs, simulate_portfolios, spec_signals
from alphatwin_pipelines.reports.reoptimise import oos_signals, reoptimise_walk_forward
from alphatwin_pipelines.stats import compute_metrics
from alphatwin_pipelines.strategies import MAX_LEVEL, Indicators, StrategySpec, generate_state, sample_params
from alphatwin_pipelines.strategies import filters as flt
from tests.fixtures.markets import gappy_market

TOLERANCE = 1e-9
COSTS = CostModel(fees_bps=5.0, slippage_bps=3.0, impact_k_bps=100.0)  # thin volumes: impact matters


@pytest.fixture(scope="module")
def market():
    return gappy_market(seed=1, sessions=520)


def _specs(family: str, level: int, n: int = 3) -> list[StrategySpec]:
    return [StrategySpec(family, p, level) for p in sample_params(family, level, n, seed=100 + level)]


@pytest.mark.parametrize("family", sorted(KERNEL_FAMILIES))
def test_trial_streams_equal_the_vectorbt_books_for_every_level(market, family):
    indicators = Indicators(market)
    traded = 0
    for level in range(MAX_LEVEL + 1):
        specs = _specs(family, level)
        compiled = trial_returns(specs, market, COSTS, indicators, chunk=2)
        books = simulate_portfolios(dict(enumerate(spec_signals(specs, market, indicators))), market, COSTS).returns
        assert list(compiled.columns) == list(books.columns) and compiled.index.equals(books.index)
        assert np.abs(compiled.to_numpy() - books.to_numpy()).max() <= TOLERANCE, (family, level)
        traded += int((books.to_numpy() != 0).any(axis=0).sum())
    assert traded > 0  # real trades, not flat books


@pytest.mark.parametrize("family", sorted(KERNEL_FAMILIES))
def test_streams_from_a_first_row_equal_the_windowed_vectorbt_books(market, family):
    """Walk-forward test windows: each spec trades from its own first row, decisions before it dropped."""
    indicators = Indicators(market)
    level = {"ma_cross": 11, "adx_trend": 4}.get(family, 2)
    specs = _specs(family, level, 4)
    starts = [0, 150, 333, 519]
    windows = [SimpleNamespace(index=k, test_positions=slice(r, r + 1)) for k, r in enumerate(starts)]
    compiled = portfolio_streams(specs, market, COSTS, indicators, starts)
    books = simulate_portfolios(oos_signals(specs, windows, market, indicators), market, COSTS).returns
    assert compiled.shape == books.shape
    assert np.abs(compiled - books.to_numpy()).max() <= TOLERANCE
    assert (compiled[:150, 1] == 0).all() and (compiled[:333, 2] == 0).all()


def test_cost_sensitivity_equals_the_vectorbt_re_runs(market, tmp_path):
    settings = ValidationSettings(train=80, test=40, trials_per_window=3, embargo=2, costs=COSTS,
                                  cost_multipliers=(0.0, 1.0, 2.5))
    wf = reoptimise_walk_forward(StrategySpec("ma_cross", {"fast": 5, "slow": 20}, 2), market, settings.train,
                                 settings.test, settings.trials_per_window, 0, COSTS, settings.embargo,
                                 storage_url=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert len(wf.splits) >= 3
    table = cost_sensitivity(wf, market, settings).set_index("cost_multiplier")
    signals = oos_signals(wf.specs, wf.splits, market)
    for factor in settings.cost_multipliers:
        books = simulate_portfolios(signals, market, scale_costs(COSTS, factor)).returns
        expected = compute_metrics(stitch(books, wf.windows))
        for name in ("total_return", "cagr", "sharpe", "max_drawdown"):
            assert table.loc[factor, name] == pytest.approx(expected[name], rel=1e-9, abs=1e-12), (factor, name)
    assert table["total_return"].is_monotonic_decreasing


@pytest.mark.parametrize("family", sorted(KERNEL_FAMILIES))
def test_compiled_state_equals_generate_state_for_every_level(market, family):
    """The walk-forward's test-window signals come from the compiled state (``reoptimise.oos_signals``)."""
    indicators = Indicators(market)
    for level in range(MAX_LEVEL + 1):
        for spec in _specs(family, level, 2):
            state, held = generate_state(spec, market, indicators)
            fast_state, fast_held = compiled_state(spec, indicators)
            np.testing.assert_array_equal(fast_state, state, err_msg=f"{family} L{level}")
            np.testing.assert_array_equal(fast_held, held, err_msg=f"{family} L{level}")


def _pandas_rank(column: np.ndarray, window: int) -> np.ndarray:
    """The definition: on the symbol's finite values, the share of the last ``window`` at or below the current."""
    own = pd.Series(column).dropna()
    rank = own.rolling(window).apply(lambda w: (w <= w[-1]).mean(), raw=True)
    return rank.reindex(range(len(column))).to_numpy()


@pytest.mark.parametrize("vol_window, rank_window", [(10, 30), (21, 252), (5, 7)])
def test_compiled_vol_rank_equals_the_pandas_definition(market, vol_window, rank_window):
    ind = Indicators(market)
    rv = ind.realised_vol(vol_window)
    ranked = flt.vol_rank(ind, vol_window, rank_window)
    expected = np.column_stack([_pandas_rank(rv[:, j], rank_window) for j in range(rv.shape[1])])
    np.testing.assert_array_equal(ranked, expected)
    assert np.isfinite(ranked).sum() > 0.3 * ranked.size  # ranks, not an all-NaN array
    assert np.isnan(ranked[~np.isfinite(rv)]).all()  # no bar, no rank
