"""Default caps that cannot bind are relaxed to the least feasible value and reported; explicit caps are kept."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines.portfolio import (
    DEFAULT_CAPS,
    AllocationPolicy,
    Constraints,
    InfeasibleConstraintsError,
    allocate,
    build_system,
    ensure_feasible,
)

UNIVERSE = pd.DataFrame({"symbol": ["T1", "T2", "T3", "T4", "E1"],
                         "sector": ["Tech", "Tech", "Tech", "Tech", "Energy"]})


def _returns(n, common=0.0, sessions=300, seed=7):
    """Long returns of ``n`` strategies; ``common`` > 0 adds a shared factor that links them into one cluster."""
    rng = np.random.default_rng(seed)
    values = rng.normal(0, 0.01, (sessions, n)) + common * rng.normal(0, 0.01, (sessions, 1)) + 0.0004
    ids = [f"s{i}" for i in range(n)]
    wide = pd.DataFrame(values, index=pd.DatetimeIndex(pd.bdate_range("2023-01-02", periods=sessions), name="date"),
                        columns=ids)
    return wide.melt(ignore_index=False, var_name="strategy_id", value_name="return").reset_index(), ids


def _one_symbol_each(ids, symbols, date):
    return pd.DataFrame({"strategy_id": ids, "symbol": symbols, "date": date, "weight": 1.0})


def _frames(n, symbols, common=0.0):
    returns, ids = _returns(n, common)
    positions = _one_symbol_each(ids, symbols, returns["date"].max())
    return returns, positions, UNIVERSE, pd.DataFrame({"strategy_id": ids, "scanner_partition": "2024-01-05"})


def test_the_default_policy_uses_the_engine_defaults_and_marks_them_relaxable():
    caps = AllocationPolicy().constraints
    assert (caps.max_weight, caps.sector_cap, caps.cluster_cap) == tuple(DEFAULT_CAPS.values())
    assert caps.relaxable == ("max_weight", "sector_cap", "cluster_cap")
    explicit = Constraints.with_defaults(max_weight=0.3, cluster_threshold=0.5)
    assert (explicit.max_weight, explicit.cluster_threshold, explicit.relaxable) == (0.3, 0.5, ("sector_cap", "cluster_cap"))


@pytest.mark.parametrize("n", [2, 3])
def test_a_default_max_weight_with_too_few_strategies_is_relaxed_to_one_over_n(n):
    allocation = allocate(*_frames(n, ["T1", "E1", "T2"][:n]))
    relaxed = {r.cap: r for r in allocation.relaxations}["max_weight"]  # with 3, Tech's 2/3 relaxes sector_cap too
    assert (relaxed.cap, relaxed.configured) == ("max_weight", 0.25)
    assert relaxed.used == allocation.caps.max_weight == pytest.approx(1 / n, abs=1e-6) and relaxed.used >= 1 / n
    assert f"only {n} strategies passed validation" in relaxed.reason
    # 1/n is the least feasible value: every strategy sits at the cap, and the weights respect it.
    np.testing.assert_allclose(allocation.weights.to_numpy(), 1 / n, atol=1e-6)
    assert allocation.violations() == []


def test_the_same_max_weight_set_explicitly_still_fails_with_the_value_that_works():
    policy = AllocationPolicy(constraints=Constraints.with_defaults(max_weight=0.25))
    with pytest.raises(InfeasibleConstraintsError, match=r"max_weight=0\.25 .*Raise max_weight to at least 0\.5000"):
        allocate(*_frames(2, ["T1", "E1"]), policy)


def test_a_default_cluster_cap_over_a_single_cluster_is_relaxed_and_an_explicit_one_fails():
    frames = _frames(5, ["T1", "T2", "T3", "T4", "E1"], common=4.0)
    allocation = allocate(*frames, AllocationPolicy(constraints=Constraints.with_defaults(sector_cap=1.0)))
    assert allocation.clusters.nunique() == 1
    (relaxed,) = allocation.relaxations
    assert (relaxed.cap, relaxed.configured, relaxed.used) == ("cluster_cap", 0.5, 1.0)
    assert "form 1 correlation cluster(s)" in relaxed.reason
    assert allocation.violations() == [] and allocation.weights.max() <= 0.25 + 1e-6
    explicit = AllocationPolicy(constraints=Constraints.with_defaults(sector_cap=1.0, cluster_cap=0.5))
    with pytest.raises(InfeasibleConstraintsError, match=r"raise cluster_cap to at least 1\.0000"):
        allocate(*frames, explicit)


def test_a_default_sector_cap_goes_to_the_least_feasible_value_and_the_weights_meet_it():
    # Four Tech strategies and one Energy: Energy holds at most max_weight = 0.25, so Tech needs 0.75.
    frames = _frames(5, ["T1", "T2", "T3", "T4", "E1"])
    allocation = allocate(*frames, AllocationPolicy(method="min_volatility"))
    (relaxed,) = allocation.relaxations
    assert (relaxed.cap, relaxed.configured, relaxed.used) == ("sector_cap", 0.5, pytest.approx(0.75, abs=1e-6))
    assert "hold symbols in 2 sector(s)" in relaxed.reason
    sums = allocation.symbol_sector_sums()
    assert sums["Tech"] <= relaxed.used + 1e-6 and sums["Energy"] <= 0.25 + 1e-6
    assert allocation.violations() == []
    # Least: a hair below the value used, no allocation exists.
    exposure = pd.DataFrame({"Tech": [1.0] * 4 + [0.0], "Energy": [0.0] * 4 + [1.0]}, index=allocation.weights.index)
    tighter = build_system(Constraints(max_weight=0.25, sector_cap=relaxed.used - 1e-4), exposure, allocation.clusters)
    with pytest.raises(InfeasibleConstraintsError, match=r"sector_cap"):
        ensure_feasible(tighter)


def test_a_default_max_weight_in_conflict_with_an_explicit_sector_cap_gives_way():
    # Tech explicitly capped at 0.6 leaves 0.4 for the lone Energy strategy: max_weight must reach 0.4.
    frames = _frames(5, ["T1", "T2", "T3", "T4", "E1"])
    allocation = allocate(*frames, AllocationPolicy(constraints=Constraints.with_defaults(sector_cap=0.6)))
    (relaxed,) = allocation.relaxations
    assert (relaxed.cap, relaxed.used) == ("max_weight", pytest.approx(0.4, abs=1e-6))
    assert "cannot be met together with the other caps" in relaxed.reason
    assert allocation.caps.sector_cap == 0.6 and allocation.violations() == []
    assert allocation.weights["s4"] == pytest.approx(0.4, abs=1e-6)
    with pytest.raises(InfeasibleConstraintsError, match="sector_cap=0.6"):
        allocate(*frames, AllocationPolicy(constraints=Constraints.with_defaults(max_weight=0.25, sector_cap=0.6)))


def test_caps_that_bind_are_not_relaxed():
    frames = _frames(5, ["T1", "T2", "T3", "T4", "E1"])
    caps = Constraints.with_defaults(sector_cap=0.8)
    allocation = allocate(*frames, AllocationPolicy(constraints=caps))
    assert allocation.relaxations == () and allocation.caps == caps
