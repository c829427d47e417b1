"""Deflated Sharpe Ratio and Probability of Backtest Overfitting: worked examples and limits.

Every expected number is derived here from the closed-form formulas, with its intermediate
values written out, rather than copied from anywhere.
"""

from __future__ import annotations

import math
import time
from math import comb

import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines.stats import deflated_sharpe as ds
from alphatwin_pipelines.stats import metrics
from alphatwin_pipelines.stats.pbo import probability_of_backtest_overfitting, split_masks

GAMMA = 0.5772156649


def phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


# --------------------------------------------------------------------------- Deflated Sharpe


def test_expected_max_sharpe_for_100_trials():
    # Z^-1(1 - 1/100) = Z^-1(0.99) = 2.3263479; Z^-1(1 - 1/(100 e)) = Z^-1(0.9963212) = 2.6802104
    expected = (1 - GAMMA) * 2.3263478740 + GAMMA * 2.6802104450
    assert expected == pytest.approx(2.5306029, abs=1e-7)
    assert ds.expected_max_sharpe(100, 1.0) == pytest.approx(expected, abs=1e-8)
    # Scales with the standard deviation of the trials' SRs and shifts with their mean.
    assert ds.expected_max_sharpe(100, 0.25) == pytest.approx(0.5 * expected, abs=1e-8)
    assert ds.expected_max_sharpe(100, 0.25, mean_sr=0.1) == pytest.approx(0.1 + 0.5 * expected)


def test_expected_max_sharpe_is_close_to_simulation():
    # Mean of the max of 100 iid standard normals, by Monte Carlo: about 2.508.
    simulated = np.random.default_rng(0).standard_normal((20_000, 100)).max(axis=1).mean()
    assert ds.expected_max_sharpe(100, 1.0) == pytest.approx(simulated, abs=0.05)


def test_expected_max_sharpe_limits():
    assert ds.expected_max_sharpe(1, 0.7) == 0.0  # no selection with a single trial
    values = [ds.expected_max_sharpe(n, 1.0) for n in (2, 5, 10, 100, 1000, 10_000)]
    assert values == sorted(values) and values[0] > 0
    with pytest.raises(ValueError):
        ds.expected_max_sharpe(0, 1.0)
    with pytest.raises(ValueError):
        ds.expected_max_sharpe(10, -1.0)


def test_psr_at_its_own_sharpe_is_one_half():
    for t in (2, 10, 252, 5000):
        assert ds.probabilistic_sharpe_ratio(0.12, 0.12, t, -1.5, 8.0) == 0.5


def test_psr_worked_example_normal_returns():
    # SR = 0.1 per day, SR* = 0, T = 253, skew 0, kurtosis 3:
    # denominator sqrt(1 - 0 + (3 - 1)/4 * 0.01) = sqrt(1.005) = 1.0024969
    # z = 0.1 * sqrt(252) / 1.0024969 = 1.5874508 / 1.0024969 = 1.5834970 -> Z(z) = 0.9433459
    z = 0.1 * math.sqrt(252) / math.sqrt(1.005)
    assert z == pytest.approx(1.5834970, abs=1e-6)
    psr = ds.probabilistic_sharpe_ratio(0.1, 0.0, 253, 0.0, 3.0)
    assert psr == pytest.approx(phi(z), abs=1e-12)
    assert psr == pytest.approx(0.9433459, abs=1e-6)
    assert ds.sharpe_ratio_std(0.1, 253) == pytest.approx(math.sqrt(1.005 / 252))


def test_dsr_worked_example_100_trials_five_years():
    # The setting of the DSR paper's example: an annualised SR of 2.5 picked among N = 100
    # trials whose annualised SRs have variance 0.5, T = 1250 daily returns, skew -3,
    # kurtosis 10. Step by step, per day:
    sr, var = ds.annual_to_per_period(2.5, 0.5)
    assert sr == pytest.approx(2.5 / math.sqrt(252)) and sr == pytest.approx(0.1574852, abs=1e-7)
    assert var == pytest.approx(0.5 / 252)  # 0.0019841
    sr0 = math.sqrt(var) * 2.5306029  # 0.0445435 * 2.5306029
    assert sr0 == pytest.approx(0.1127220, abs=1e-7)  # 1.7894 annualised
    radicand = 1 - (-3) * sr + (10 - 1) / 4 * sr**2  # 1 + 0.4724556 + 0.0558036
    assert radicand == pytest.approx(1.5282592, abs=1e-7)
    z = (sr - sr0) * math.sqrt(1250 - 1) / math.sqrt(radicand)
    assert z == pytest.approx(1.2796868, abs=1e-6)
    assert ds.expected_max_sharpe(100, var) == pytest.approx(sr0, abs=1e-9)
    dsr = ds.deflated_sharpe_ratio(sr, 1250, 100, var, skew=-3.0, kurt=10.0)
    assert dsr == pytest.approx(phi(z), abs=1e-8)
    assert dsr == pytest.approx(0.8996723, abs=1e-6)
    # Without deflation the same track record looks near-certain.
    assert ds.probabilistic_sharpe_ratio(sr, 0.0, 1250, -3.0, 10.0) > 0.9999


def test_dsr_limits():
    sr, t, var = 0.08, 1000, 0.002
    dsrs = [ds.deflated_sharpe_ratio(sr, t, n, var) for n in (1, 2, 10, 100, 1000)]
    assert all(a > b for a, b in zip(dsrs, dsrs[1:]))  # more trials, less confidence
    for skew, kurt in ((0.0, 3.0), (-2.0, 9.0)):
        assert ds.deflated_sharpe_ratio(sr, t, 1, var, skew, kurt) == pytest.approx(
            ds.probabilistic_sharpe_ratio(sr, 0.0, t, skew, kurt))
    base = ds.probabilistic_sharpe_ratio(sr, 0.0, t, 0.0, 3.0)
    assert ds.probabilistic_sharpe_ratio(sr, 0.0, t, -1.0, 3.0) < base  # negative skew hurts
    assert ds.probabilistic_sharpe_ratio(sr, 0.0, t, 0.0, 10.0) < base  # fat tails hurt
    assert ds.probabilistic_sharpe_ratio(sr, 0.0, 4 * t) > base  # a longer record helps
    assert math.isnan(ds.probabilistic_sharpe_ratio(sr, 0.0, 1))
    assert math.isnan(ds.probabilistic_sharpe_ratio(sr, 0.0, 100, float("nan"), 3.0))


def test_dsr_from_returns_matches_the_formula():
    r = pd.Series(np.random.default_rng(3).standard_t(5, 1500) * 0.01 + 0.0008)
    sr = metrics.sharpe_ratio(r, annualise=False)
    expected = ds.deflated_sharpe_ratio(sr, 1500, 50, 0.003, metrics.skewness(r),
                                        metrics.kurtosis(r))
    assert ds.deflated_sharpe_ratio_from_returns(r, 50, 0.003) == pytest.approx(expected)


def test_deflate_trials_noise_versus_edge():
    rng = np.random.default_rng(11)
    noise = pd.DataFrame(rng.normal(0, 0.01, (1000, 200)))
    res = ds.deflate_trials(noise)
    srs = metrics.sharpe_ratio(noise, annualise=False)
    assert res.selected == srs.idxmax() and res.n_trials == 200
    assert res.sr_variance == pytest.approx(srs.var(ddof=1))
    assert res.sr0 == pytest.approx(ds.expected_max_sharpe(200, srs.var(ddof=1)))
    assert res.psr > 0.95  # the best of 200 noise series looks significant on its own ...
    assert res.dsr < 0.95  # ... but not once the 200 trials are counted
    edge = noise.copy()
    edge[7] = rng.normal(0.0015, 0.01, 1000)  # about 2.4 annualised
    res = ds.deflate_trials(edge)
    assert res.selected == 7 and res.dsr > 0.95
    assert ds.deflate_trials(edge, selected=3).selected == 3
    # A trial that never traded has no SR but was still tried: it counts in N, not in V.
    edge["idle"] = 0.0
    res_idle = ds.deflate_trials(edge)
    assert res_idle.n_trials == 201 and res_idle.sr_variance == pytest.approx(res.sr_variance)


# --------------------------------------------------------------- Probability of overfitting


@pytest.mark.parametrize("s", [2, 4, 6, 8, 10, 16])
def test_number_of_combinations(s):
    masks = split_masks(s)
    assert masks.shape == (comb(s, s // 2), s)
    assert (masks.sum(axis=1) == s // 2).all()
    rows = {tuple(r) for r in masks}
    assert len(rows) == len(masks) and all(tuple(~np.array(r)) in rows for r in rows)
    m = np.random.default_rng(s).normal(0, 0.01, (4 * s, 3))
    assert probability_of_backtest_overfitting(m, n_splits=s).n_combinations == comb(s, s // 2)


def test_hand_computed_four_blocks_two_strategies():
    # Four blocks of two identical rows; per-block returns in %:
    #   s0: [1.5, -1.5, -0.5, 0.5]    s1: [-0.5, 1.5, -2.5, 3.5]
    # IS = two blocks (mean), n* = IS best, its OOS rank among 2 -> omega = rank/3 -> logit:
    #   IS (0,1): s0 0.0 vs s1 0.5  -> s1; OOS (2,3): s0 0.0 vs s1 0.5   -> rank 2 -> ln 2
    #   IS (0,2): s0 0.5 vs s1 -1.5 -> s0; OOS (1,3): s0 -0.5 vs s1 2.5  -> rank 1 -> -ln 2
    #   IS (0,3): s0 1.0 vs s1 1.5  -> s1; OOS (1,2): s0 -1.0 vs s1 -0.5 -> rank 2 -> ln 2
    #   IS (1,2): s0 -1.0 vs s1 -0.5 -> s1; OOS (0,3): s0 1.0 vs s1 1.5  -> rank 2 -> ln 2
    #   IS (1,3): s0 -0.5 vs s1 2.5 -> s1; OOS (0,2): s0 0.5 vs s1 -1.5  -> rank 1 -> -ln 2
    #   IS (2,3): s0 0.0 vs s1 0.5  -> s1; OOS (0,1): s0 0.0 vs s1 0.5   -> rank 2 -> ln 2
    # PBO = 2/6; OOS loss in 3 of 6 splits.
    blocks = np.array([[1.5, -0.5], [-1.5, 1.5], [-0.5, -2.5], [0.5, 3.5]]) / 100
    m = np.repeat(blocks, 2, axis=0)
    res = probability_of_backtest_overfitting(m, n_splits=4, metric="mean")
    ln2 = math.log(2)
    np.testing.assert_allclose(res.logits, [ln2, -ln2, ln2, ln2, -ln2, ln2])
    assert res.pbo == pytest.approx(1 / 3)
    np.testing.assert_array_equal(res.selected, [1, 0, 1, 1, 1, 1])
    is_best = np.array([0.5, 0.5, 1.5, -0.5, 2.5, 0.5]) / 100
    oos_best = np.array([0.5, -0.5, -0.5, 1.5, -1.5, 0.5]) / 100
    np.testing.assert_allclose(res.is_metric, is_best, atol=1e-15)
    np.testing.assert_allclose(res.oos_metric, oos_best, atol=1e-15)
    assert res.prob_oos_loss == pytest.approx(3 / 6)
    dx, dy = is_best - is_best.mean(), oos_best - oos_best.mean()
    slope = (dx * dy).sum() / (dx * dx).sum()
    assert res.performance_degradation.slope == pytest.approx(slope) and slope < 0
    assert res.performance_degradation.intercept == pytest.approx(
        oos_best.mean() - slope * is_best.mean())


def test_hand_computed_two_blocks_sharpe():
    # Blocks of 3 rows. Per-block Sharpe (mean / std, ddof=1):
    #   s0: A = [1, 2, 3]% -> 2% / 1% = 2     B = [1, -1, 0]% -> 0 / 1% = 0
    #   s1: A = [0, 2, 4]% -> 2% / 2% = 1     B = [2, 1, 3]%  -> 2% / 1% = 2
    # IS A: best s0 (2 > 1), OOS B: s0 0 < s1 2 -> rank 1, omega 1/3, logit ln(1/2)
    # IS B: best s1 (2 > 0), OOS A: s1 1 < s0 2 -> rank 1, logit ln(1/2). By mean, A is a tie.
    m = np.array([[1, 0], [2, 2], [3, 4], [1, 2], [-1, 1], [0, 3]], dtype=float) / 100
    res = probability_of_backtest_overfitting(m, n_splits=2)
    np.testing.assert_allclose(res.logits, [math.log(0.5)] * 2)
    np.testing.assert_allclose(res.is_metric, [2.0, 2.0])
    np.testing.assert_allclose(res.oos_metric, [0.0, 1.0], atol=1e-12)
    assert res.pbo == 1.0 and res.prob_oos_loss == 0.0


def test_pure_noise_gives_pbo_near_one_half():
    # PBO of one noise panel varies a lot (its splits share data), so average over panels.
    pbos = [probability_of_backtest_overfitting(
        np.random.default_rng(seed).normal(0, 0.01, (1000, 20)), n_splits=16).pbo
        for seed in range(20)]
    assert np.mean(pbos) == pytest.approx(0.5, abs=0.1)


def test_genuine_edge_gives_pbo_near_zero():
    rng = np.random.default_rng(5)
    m = rng.normal(0, 0.01, (1260, 50))
    m[:, 17] += 0.0015  # annualised SR about 2.4 against pure noise
    res = probability_of_backtest_overfitting(m)
    assert res.pbo < 0.05
    assert np.mean(res.selected == 17) > 0.95
    assert res.prob_oos_loss < 0.05


def test_reversal_between_is_and_oos_gives_high_pbo():
    # Each configuration has exactly zero mean over the whole sample, so whatever did well in
    # the IS half must have done equally badly in the OOS half: performance reverses.
    rng = np.random.default_rng(9)
    m = rng.normal(0, 0.01, (1000, 30))
    m -= m.mean(axis=0)
    res = probability_of_backtest_overfitting(m)
    assert res.pbo > 0.8
    assert res.performance_degradation.slope < 0
    assert res.prob_oos_loss > 0.8


def test_callable_metric_matches_builtin_sharpe():
    m = pd.DataFrame(np.random.default_rng(2).normal(0, 0.01, (200, 6)))
    fast = probability_of_backtest_overfitting(m, n_splits=8)
    slow = probability_of_backtest_overfitting(
        m.to_numpy(), n_splits=8, metric=lambda x: x.mean(0) / x.std(0, ddof=1))
    np.testing.assert_allclose(fast.logits, slow.logits)
    np.testing.assert_allclose(fast.is_metric, slow.is_metric)
    np.testing.assert_array_equal(fast.selected, slow.selected)
    assert "PBO" in fast.summary()


def test_input_validation():
    m = np.random.default_rng(0).normal(0, 0.01, (100, 4))
    with pytest.raises(ValueError):
        probability_of_backtest_overfitting(m, n_splits=5)
    with pytest.raises(ValueError):
        probability_of_backtest_overfitting(m[:, :1])
    bad = m.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        probability_of_backtest_overfitting(bad)
    with pytest.raises(ValueError):
        probability_of_backtest_overfitting(m, metric="sortino")
    # A constant configuration has no Sharpe ratio: it is never picked and ranks last.
    m[:, 0] = 0.0
    res = probability_of_backtest_overfitting(m, n_splits=4)
    assert (res.selected != 0).all()


def test_pbo_on_1260_by_100_runs_every_split_and_finds_no_edge_in_noise():
    m = np.random.default_rng(1).normal(0, 0.01, (1260, 100))
    t0 = time.perf_counter()
    res = probability_of_backtest_overfitting(m, n_splits=16)
    print(f"\nPBO T=1260 N=100 S=16 ({res.n_combinations} splits): {time.perf_counter() - t0:.2f} s")
    assert res.n_combinations == 12870 and len(res.logits) == 12870
    assert 0.3 < res.pbo < 0.7  # pure noise: the in-sample best is out-of-sample median-ish
