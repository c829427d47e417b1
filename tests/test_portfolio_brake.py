"""The portfolio drawdown brake: a hand-run loop, causality, inputs untouched, the allocation and asset."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphatwin_pipelines.portfolio import AllocationPolicy, DrawdownBrake, allocate, backtest_brake
from alphatwin_pipelines.portfolio.synthetic import write_inputs
from alphatwin_pipelines.stages.portfolio import allocate_portfolio, version_table
from alphatwin_pipelines.stats import compute_metrics
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import ALLOCATIONS, STRATEGY_POSITIONS, STRATEGY_RETURNS, UNIVERSE
from alphatwin_pipelines.universe import parse_universe
from assets.portfolio import PortfolioConfig, portfolio_allocations
from assets.resources import StorageResource

COST = 0.001


def _by_hand(returns: list[float], limit: float, floor: float, span: float, cost: float) -> tuple[list, list]:
    """An independent event loop: track equity and peak, decide tomorrow's scale at each close."""
    equity, peak, scale, braked, scales = 1.0, 1.0, 1.0, [], []
    for r in returns:
        previous = scales[-1] if scales else 1.0
        scales.append(scale)
        braked.append(scale * r - abs(scale - previous) * cost)
        equity *= 1.0 + r
        peak = max(peak, equity)
        dd = 1.0 - equity / peak
        if dd <= limit:
            scale = 1.0
        else:
            scale = max(floor, 1.0 - (1.0 - floor) * (dd - limit) / span)
    return braked, scales


def _crash(n: int = 300, seed: int = 3) -> pd.Series:
    """A rally, a 40 % slide, a recovery: the brake has something to do."""
    rng = np.random.default_rng(seed)
    drift = np.concatenate([np.full(100, 0.001), np.full(100, -0.005), np.full(n - 200, 0.002)])
    return pd.Series(drift + rng.normal(0, 0.01, n), index=pd.bdate_range("2020-01-01", periods=n))


@pytest.mark.parametrize("limit,floor,span", [(0.05, 0.25, 0.05), (0.10, 0.0, 0.20), (0.02, 0.5, 0.01)])
def test_the_brake_matches_a_hand_run_loop(limit, floor, span):
    returns = _crash()
    result = backtest_brake(returns, DrawdownBrake(limit, floor, span), cost_per_turnover=COST)
    braked, scales = _by_hand(returns.tolist(), limit, floor, span, COST)
    np.testing.assert_allclose(result.braked.to_numpy(), braked, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.scale.to_numpy(), scales, rtol=0, atol=1e-12)
    assert (result.scale < 1.0).any() and result.scale.min() >= floor


def test_on_a_slide_the_brake_cuts_the_drawdown_and_reports_both_books():
    result = backtest_brake(_crash(), DrawdownBrake(limit=0.05, floor=0.25))
    table = result.summary()
    assert table.loc["with brake", "max_drawdown"] < table.loc["without brake", "max_drawdown"] - 0.05
    assert table.loc["with brake", "sessions_braked"] > 0 == table.loc["without brake", "sessions_braked"]
    assert table.loc["without brake", "sharpe"] == pytest.approx(compute_metrics(_crash())["sharpe"])


def test_inputs_are_not_modified():
    returns = _crash().where(lambda r: r.index.day != 5)  # NaN sessions count as flat
    before = returns.copy()
    backtest_brake(returns, DrawdownBrake())
    pd.testing.assert_series_equal(returns, before)


@settings(max_examples=40, deadline=None)
@given(cut=st.integers(min_value=5, max_value=290), seed=st.integers(0, 10_000))
def test_the_scale_for_a_session_uses_only_returns_before_it(cut, seed):
    returns = _crash()
    changed = returns.copy()
    changed.iloc[cut:] = np.random.default_rng(seed).normal(-0.02, 0.05, len(returns) - cut)
    brake = DrawdownBrake(limit=0.05, floor=0.1)
    a, b = backtest_brake(returns, brake), backtest_brake(changed, brake)
    # the scale applied at ``cut`` was decided at the close before it
    np.testing.assert_array_equal(a.scale.to_numpy()[: cut + 1], b.scale.to_numpy()[: cut + 1])
    np.testing.assert_array_equal(a.braked.to_numpy()[:cut], b.braked.to_numpy()[:cut])


@pytest.mark.parametrize("kwargs,word", [({"limit": 0.0}, "limit"), ({"floor": 1.5}, "floor"),
                                         ({"span": -0.1}, "span")])
def test_bad_settings_say_which_and_how_to_fix(kwargs, word):
    with pytest.raises(ValueError, match=word):
        DrawdownBrake(**kwargs)


@pytest.fixture
def inputs(shared_data, data_dir):
    universe = parse_universe(str(shared_data / "sp500_constituents.csv"))
    store = TableStore(data_dir)
    passed = write_inputs(store, universe, n_strategies=30, n_sessions=252, seed=5)
    return store, passed, universe


def _frames(store):
    return (store.read_table(STRATEGY_RETURNS), store.read_table(STRATEGY_POSITIONS), store.read_table(UNIVERSE))


def test_the_allocation_scales_its_symbol_book_and_keeps_the_strategy_mix(inputs):
    store, passed, _ = inputs
    returns, positions, universe = _frames(store)
    chosen = pd.DataFrame({"strategy_id": passed, "scanner_partition": "2024-12-31"})
    plain = allocate(returns, positions, universe, chosen, AllocationPolicy())
    # a brake that never engages (limit 99 %) measures the mix's drawdown at the last close ...
    watch = allocate(returns, positions, universe, chosen, AllocationPolicy(brake=DrawdownBrake(limit=0.99)))
    dd = watch.brake.drawdown
    assert dd > 0.002 and watch.exposure_scale == 1.0, "the seeded inputs end in a drawdown"
    # ... and a limit below it forces the brake on
    braked = allocate(returns, positions, universe, chosen, AllocationPolicy(brake=DrawdownBrake(limit=dd / 4, floor=0.3)))
    assert braked.exposure_scale < 1.0 and plain.exposure_scale == 1.0
    pd.testing.assert_series_equal(braked.weights, plain.weights)
    np.testing.assert_allclose(braked.symbols["weight"], plain.symbols["weight"] * braked.exposure_scale)
    assert braked.version != plain.version
    frame = braked.frame()
    assert (frame["exposure_scale"] == braked.exposure_scale).all()


def test_the_asset_backtests_the_brake_in_its_metadata(inputs, data_dir):
    store, _, _ = inputs
    result = dg.materialize([portfolio_allocations], resources={"storage": StorageResource(data_dir=str(data_dir))},
                            run_config={"ops": {ALLOCATIONS: {"config": {"drawdown_limit": 0.001}}}})
    metadata = result.asset_materializations_for_node(ALLOCATIONS)[0].metadata
    assert "with brake" in metadata["drawdown_brake"].value and "without brake" in metadata["drawdown_brake"].value
    scale = metadata["exposure_scale"].value
    stored = store.read_table(version_table(metadata["allocation_version"].value))
    assert scale < 1.0 and (stored["exposure_scale"] == scale).all()
    unbraked = allocate_portfolio(store, PortfolioConfig().policy()).allocation
    symbols = stored[stored["kind"] == "symbol"].set_index("name")["weight"]
    np.testing.assert_allclose(symbols, unbraked.symbols.set_index("symbol")["weight"].reindex(symbols.index) * scale)
    again = allocate_portfolio(store, PortfolioConfig(drawdown_limit=0.001).policy())
    assert again.allocation.version == metadata["allocation_version"].value
