"""Allocation engine: golden weights against closed forms, caps that bind, infeasibility, regime shifts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines.portfolio import (
    METHODS,
    AllocationError,
    AllocationInputError,
    AllocationPolicy,
    Constraints,
    InfeasibleConstraintsError,
    allocate,
    build_system,
    correlation_regime,
    equal_risk_contribution,
    ensure_feasible,
    solve,
)
from alphatwin_pipelines.portfolio.synthetic import basket_positions, factor_model_returns

NAMES = ["a", "b", "c", "d"]


def _cov(variances, corr=None):
    sd = np.sqrt(np.asarray(variances, dtype=float))
    corr = np.eye(len(sd)) if corr is None else np.asarray(corr, dtype=float)
    names = NAMES[: len(sd)]
    return pd.DataFrame(corr * np.outer(sd, sd), index=names, columns=names)


def _free(cov, max_weight=1.0):
    """No caps but max_weight: every strategy in its own sector and cluster, both caps off."""
    exposure = pd.DataFrame(0.0, index=cov.index, columns=["X"])
    return build_system(Constraints(max_weight=max_weight), exposure, pd.Series(range(len(cov)), index=cov.index))


def _mu(values, cov):
    return pd.Series(values, index=cov.index, dtype=float)


# -- golden weights ----------------------------------------------------------------------------
def test_min_volatility_on_uncorrelated_streams_is_inverse_variance():
    cov = _cov([0.04, 0.09, 0.01])
    weights = solve("min_volatility", cov, _mu([0.1] * 3, cov), _free(cov)).weights
    inverse = np.array([1 / 0.04, 1 / 0.09, 1 / 0.01])
    np.testing.assert_allclose(weights.to_numpy(), inverse / inverse.sum(), atol=1e-5)


def test_risk_parity_on_a_diagonal_covariance_is_inverse_volatility():
    cov = _cov([0.04, 0.09, 0.01])
    solution = solve("risk_parity", cov, _mu([0.0] * 3, cov), _free(cov))
    inverse = np.array([1 / 0.2, 1 / 0.3, 1 / 0.1])
    np.testing.assert_allclose(solution.weights.to_numpy(), inverse / inverse.sum(), atol=1e-10)
    assert solution.projection_shift == 0.0


def test_risk_parity_equalises_risk_contributions_under_correlation():
    # Two assets: ERC is 1/σ whatever the correlation; four: contributions w_i (Σw)_i all equal.
    two = _cov([0.04, 0.16], [[1, 0.6], [0.6, 1]]).to_numpy()
    np.testing.assert_allclose(equal_risk_contribution(two), [2 / 3, 1 / 3], atol=1e-10)
    four = _cov([0.04, 0.09, 0.01, 0.0225], [[1, .5, .2, -.1], [.5, 1, .3, 0], [.2, .3, 1, .4], [-.1, 0, .4, 1]]).to_numpy()
    w = equal_risk_contribution(four)
    contributions = w * (four @ w)
    np.testing.assert_allclose(contributions, contributions.mean(), rtol=1e-8)
    assert w.sum() == pytest.approx(1.0) and (w > 0).all()


def test_hrp_matches_a_hand_calculation():
    # Pair (a, b): σ 0.1 / 0.2, ρ 0.5. Pair (c, d): σ 0.15 / 0.15, ρ 0.8. No correlation across pairs.
    corr = [[1, .5, 0, 0], [.5, 1, 0, 0], [0, 0, 1, .8], [0, 0, .8, 1]]
    cov = _cov([0.01, 0.04, 0.0225, 0.0225], corr)
    # Inverse-variance weights inside (a, b): (0.8, 0.2); cluster variance 0.64·0.01 + 0.04·0.04 + 2·0.16·0.01.
    var_ab = 0.64 * 0.01 + 0.04 * 0.04 + 2 * 0.8 * 0.2 * 0.01
    var_cd = 0.25 * 0.0225 * 2 + 2 * 0.25 * 0.018  # equal weights inside (c, d)
    alpha = 1 - var_ab / (var_ab + var_cd)
    expected = [alpha * 0.8, alpha * 0.2, (1 - alpha) / 2, (1 - alpha) / 2]
    weights = solve("hrp", cov, _mu([0.0] * 4, cov), _free(cov)).weights
    np.testing.assert_allclose(weights.to_numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_a_single_strategy_gets_the_whole_book_under_every_method(method):
    cov = _cov([0.04])
    weights = solve(method, cov, _mu([0.1], cov), _free(cov), target_volatility=0.5).weights
    assert weights.to_dict() == pytest.approx({"a": 1.0})


def test_max_sharpe_on_uncorrelated_streams_is_mean_over_variance():
    cov = _cov([0.04, 0.01, 0.09])
    mu = _mu([0.10, 0.05, 0.08], cov)
    tangency = mu.to_numpy() / np.diag(cov)
    weights = solve("max_sharpe", cov, mu, _free(cov)).weights
    np.testing.assert_allclose(weights.to_numpy(), tangency / tangency.sum(), atol=1e-5)


def test_efficient_risk_matches_an_independent_slsqp_solution():
    from scipy.optimize import minimize

    cov = _cov([0.04, 0.01, 0.09, 0.0225], np.full((4, 4), 0.2) + 0.8 * np.eye(4))
    mu = _mu([0.12, 0.04, 0.15, 0.07], cov)
    target = 0.15
    weights = solve("efficient_risk", cov, mu, _free(cov), target_volatility=target).weights
    c = cov.to_numpy()
    reference = minimize(lambda w: -mu.to_numpy() @ w, np.full(4, 0.25), method="SLSQP", bounds=[(0, 1)] * 4,
                         constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1},
                                      {"type": "ineq", "fun": lambda w: target**2 - w @ c @ w}], options={"ftol": 1e-12})
    np.testing.assert_allclose(weights.to_numpy(), reference.x, atol=1e-3)
    assert np.sqrt(weights.to_numpy() @ c @ weights.to_numpy()) == pytest.approx(target, abs=1e-5)


def test_efficient_risk_below_the_reachable_minimum_says_what_to_raise():
    cov = _cov([0.04, 0.09, 0.01])
    with pytest.raises(AllocationError, match=r"raise target_volatility to at least 0\.08"):
        solve("efficient_risk", cov, _mu([0.1, 0.1, 0.1], cov), _free(cov), target_volatility=0.01)


# -- caps ---------------------------------------------------------------------------------------
def test_max_weight_binds_and_the_rest_stays_inverse_variance():
    cov = _cov([0.01, 0.04, 0.09, 0.16])
    weights = solve("min_volatility", cov, _mu([0.1] * 4, cov), _free(cov, max_weight=0.4)).weights
    rest = np.array([1 / 0.04, 1 / 0.09, 1 / 0.16])
    np.testing.assert_allclose(weights.to_numpy(), [0.4, *(0.6 * rest / rest.sum())], atol=1e-5)


def _independent_returns(vols, sessions=300, seed=3, common=None):
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2023-01-02", periods=sessions)
    values = rng.normal(0, 1, (sessions, len(vols))) * np.asarray(vols)
    if common is not None:  # add a shared factor to the listed columns
        values[:, common] += rng.normal(0, 0.01, (sessions, 1))
    ids = [f"s{i}" for i in range(len(vols))]
    wide = pd.DataFrame(values + 0.0005, index=pd.DatetimeIndex(dates, name="date"), columns=ids)
    return wide.melt(ignore_index=False, var_name="strategy_id", value_name="return").reset_index(), ids


def _passed(ids):
    return pd.DataFrame({"strategy_id": ids, "scanner_partition": "2024-01-05"})


SECTORS = pd.DataFrame({"symbol": ["AAA", "BBB", "CCC", "DDD", "EEE"],
                        "sector": ["Tech", "Tech", "Energy", "Health", "Utilities"]})


def test_sector_cap_binds_at_strategy_and_symbol_level():
    returns, ids = _independent_returns([0.004, 0.005, 0.012, 0.012, 0.012])
    date = returns["date"].max()
    positions = pd.DataFrame({"strategy_id": ["s0", "s1", "s1", "s2", "s3", "s4"],
                              "symbol": ["AAA", "BBB", "DDD", "CCC", "DDD", "EEE"],
                              "date": date, "weight": [1.0, 0.5, 0.5, 1.0, 1.0, 1.0]})
    policy = AllocationPolicy(method="min_volatility", constraints=Constraints(sector_cap=0.4))
    allocation = allocate(returns, positions, SECTORS, _passed(ids), policy)
    w = allocation.weights
    tech = w["s0"] + 0.5 * w["s1"]
    assert tech == pytest.approx(0.4, abs=1e-6)  # without the cap the two quiet Tech strategies take ~90 %
    symbols = allocation.symbols.set_index("symbol")
    assert symbols.loc["AAA", "weight"] == pytest.approx(w["s0"])
    assert symbols.loc["DDD", "weight"] == pytest.approx(0.5 * w["s1"] + w["s3"])
    assert symbols.loc["DDD", "spec_hashes"] == ["s1", "s3"]
    assert allocation.symbol_sector_sums()["Tech"] <= 0.4 + 1e-6
    assert allocation.violations() == []


def test_cluster_cap_binds_for_mean_variance_and_after_hrp():
    returns, ids = _independent_returns([0.003, 0.003, 0.003, 0.012, 0.012, 0.012], common=[0, 1, 2])
    positions = basket_positions(ids, list(SECTORS["symbol"]), returns["date"].max(), per_strategy=2)
    for method in ("min_volatility", "hrp", "risk_parity"):
        policy = AllocationPolicy(method=method, constraints=Constraints(cluster_cap=0.3, cluster_threshold=0.6))
        allocation = allocate(returns, positions, SECTORS, _passed(ids), policy)
        assert allocation.clusters[["s0", "s1", "s2"]].nunique() == 1
        assert allocation.clusters.nunique() == 4, method
        assert allocation.weights[["s0", "s1", "s2"]].sum() == pytest.approx(0.3, abs=1e-6), method
        assert allocation.violations() == []
    assert allocation.projection_shift > 0


def test_every_method_respects_every_cap_on_sixty_strategies():
    returns = factor_model_returns(60, 252, seed=5)
    ids = sorted(returns["strategy_id"].unique())
    positions = basket_positions(ids, list(SECTORS["symbol"]), returns["date"].max(), seed=5, per_strategy=2)
    caps = Constraints(max_weight=0.05, sector_cap=0.3, cluster_cap=0.35, cluster_threshold=0.5)
    for method in METHODS:
        allocation = allocate(returns, positions, SECTORS, _passed(ids),
                              AllocationPolicy(method=method, constraints=caps, target_volatility=0.12))
        assert allocation.violations() == [], method
        assert allocation.weights.sum() == pytest.approx(1.0, abs=1e-9)
        assert allocation.symbol_sector_sums().max() <= 0.3 + 1e-6
        w = allocation.weights.to_numpy()
        assert allocation.risk_contribution.sum() == pytest.approx(allocation.expected_volatility)
    matrix = returns.pivot(index="date", columns="strategy_id", values="return")
    independent = matrix.to_numpy() @ w  # daily portfolio returns of the last allocation
    assert allocation.expected_volatility == pytest.approx(independent.std(ddof=1) * np.sqrt(252), rel=0.25)


def test_infeasible_caps_name_the_cap_and_the_value_that_works():
    cov = _cov([0.04, 0.09, 0.01])
    with pytest.raises(InfeasibleConstraintsError, match=r"max_weight=0\.2 .*at least 0\.3333"):
        ensure_feasible(_free(cov, max_weight=0.2))
    all_tech = pd.DataFrame({"Tech": [1.0, 1.0, 1.0]}, index=cov.index)
    sectors = build_system(Constraints(sector_cap=0.5), all_tech, pd.Series([0, 1, 2], index=cov.index))
    with pytest.raises(InfeasibleConstraintsError, match=r"sector_cap=0\.5 .*raise sector_cap to at least 1\.0000"):
        ensure_feasible(sectors)
    one_cluster = build_system(Constraints(cluster_cap=0.6), all_tech * 0, pd.Series([0, 0, 0], index=cov.index))
    with pytest.raises(InfeasibleConstraintsError, match=r"cluster_cap=0\.6 .*at least 1\.0000"):
        ensure_feasible(one_cluster)


# -- correlation regime ---------------------------------------------------------------------------
def _regime_sample(rho_before, rho_after, seed, window=63, n=8):
    rng = np.random.default_rng(seed)

    def block(rho):
        common = rng.normal(size=(window, 1))
        return np.sqrt(rho) * common + np.sqrt(1 - rho) * rng.normal(size=(window, n))

    values = np.vstack([block(rho_before), block(rho_after)]) * 0.01
    return pd.DataFrame(values, index=pd.bdate_range("2024-01-01", periods=2 * window), columns=[f"s{i}" for i in range(n)])


def test_regime_shift_fires_on_a_planted_break_and_not_on_stationary_samples():
    sample = _regime_sample(0.0, 0.7, seed=1)
    broken = correlation_regime(sample, window=63, threshold=0.25)
    assert broken.rebalance_suggested and broken.mean_abs_change > 0.5
    assert broken.reason.startswith("rebalance suggested")
    assert (broken.previous_start, broken.recent_start, broken.recent_end) == (sample.index[0], sample.index[63], sample.index[-1])
    for seed in range(5):
        calm = correlation_regime(_regime_sample(0.3, 0.3, seed=seed), window=63, threshold=0.25)
        assert not calm.rebalance_suggested and calm.mean_abs_change < 0.2, seed


def test_regime_with_too_little_history_suggests_nothing_and_says_why():
    check = correlation_regime(_regime_sample(0.0, 0.7, seed=1).iloc[-100:], window=63)
    assert not check.rebalance_suggested and "126 needed" in check.reason


# -- inputs, errors, determinism -----------------------------------------------------------------
def test_inputs_are_not_mutated_and_the_version_is_a_content_hash():
    returns, ids = _independent_returns([0.004, 0.006, 0.008, 0.01])
    positions = basket_positions(ids, list(SECTORS["symbol"]), returns["date"].max(), per_strategy=2)
    frames = [returns, positions, SECTORS, _passed(ids)]
    copies = [f.copy(deep=True) for f in frames]
    first = allocate(*frames)
    for frame, copy in zip(frames, copies):
        pd.testing.assert_frame_equal(frame, copy)
    again = allocate(*copies)
    assert again.version == first.version
    pd.testing.assert_frame_equal(again.frame(), first.frame())
    assert allocate(*frames, AllocationPolicy(constraints=Constraints(max_weight=0.9))).version != first.version
    nudged = returns.copy()
    nudged.loc[0, "return"] += 1e-9
    assert allocate(nudged, positions, SECTORS, _passed(ids)).version != first.version


def test_input_errors_name_the_strategy_and_the_fix():
    returns, ids = _independent_returns([0.004, 0.006])
    positions = basket_positions(ids, list(SECTORS["symbol"]), returns["date"].max(), per_strategy=2)
    with pytest.raises(AllocationInputError, match="no rows for 1 passed strategy.*ghost"):
        allocate(returns, positions, SECTORS, _passed(ids + ["ghost"]))
    with pytest.raises(AllocationInputError, match="only 300 session.*at least 400"):
        allocate(returns, positions, SECTORS, _passed(ids), AllocationPolicy(min_history=400))
    with pytest.raises(AllocationError, match="unknown allocation method 'kelly'"):
        allocate(returns, positions, SECTORS, _passed(ids), AllocationPolicy(method="kelly"))
