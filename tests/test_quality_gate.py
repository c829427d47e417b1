"""The session gate (``quality.gate``) across universe sizes, checked against the exact binomial tail."""

from __future__ import annotations

from fractions import Fraction
from math import comb

import pandas as pd
import pytest

from alphatwin_pipelines.quality.gate import HELD, PASSED, RELEASED, GatePolicy, allowed_defects, gate_sessions

SIZES = (20, 95, 100, 500, 3000)


def tail(n: int, p: float, k: int) -> float:
    """P(X > k) for X ~ Binomial(n, p), summed exactly in rationals (independent of scipy)."""
    q = Fraction(p).limit_denominator(10**9)  # the decimal rate as written (1/200, not its binary float)
    return float(1 - sum(comb(n, i) * q**i * (1 - q) ** (n - i) for i in range(k + 1)))


@pytest.mark.parametrize("policy", [GatePolicy(), GatePolicy(0.002, 1e-3), GatePolicy(0.01, 1e-6)])
@pytest.mark.parametrize("n", SIZES)
def test_allowed_is_the_smallest_count_whose_tail_is_below_the_false_hold_rate(n, policy):
    k = int(allowed_defects(n, policy)[0])
    assert tail(n, policy.expected_defect_rate, k) <= policy.false_hold_rate
    if k > 0:
        assert tail(n, policy.expected_defect_rate, k - 1) > policy.false_hold_rate


def test_allowed_grows_with_size_but_its_share_shrinks_towards_the_expected_rate():
    policy = GatePolicy()
    allowed = allowed_defects(list(SIZES), policy)
    share = allowed / pd.Series(SIZES).to_numpy()
    assert (pd.Series(allowed).diff().dropna() >= 0).all()
    assert (pd.Series(share).diff().dropna() < 0).all()
    assert share[-1] < 3 * policy.expected_defect_rate < share[0]


@pytest.mark.parametrize("n", SIZES)
def test_one_quarantined_row_never_holds_a_session_and_a_fifth_of_them_always_does(n):
    counts = pd.DataFrame({"session": pd.to_datetime(["2024-01-02", "2024-01-03"]), "rows_in": [n, n],
                           "quarantined": [1, n // 5]})
    gate = gate_sessions(counts)
    assert gate["status"].tolist() == [PASSED, HELD], gate
    assert (gate["quarantined"] > gate["allowed"]).tolist() == [False, True]


def test_the_ninety_five_symbol_session_of_the_issue_passes_where_a_fixed_99_percent_failed():
    counts = pd.DataFrame({"session": [pd.Timestamp("2015-07-20")], "rows_in": [95], "quarantined": [1]})
    assert 94 / 95 < 0.99
    assert gate_sessions(counts)["status"].tolist() == [PASSED]


def test_a_released_session_is_marked_released_and_a_passing_one_stays_passed():
    counts = pd.DataFrame({"session": pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-04"]),
                           "rows_in": [20, 20, 20], "quarantined": [10, 10, 0]})
    gate = gate_sessions(counts, released=["2024-01-02", "2024-01-04"])
    assert gate["status"].tolist() == [RELEASED, HELD, PASSED]


def test_empty_sessions_pass_and_no_sessions_give_an_empty_gate():
    counts = pd.DataFrame({"session": [pd.Timestamp("2024-01-02")], "rows_in": [0], "quarantined": [0]})
    assert gate_sessions(counts)["status"].tolist() == [PASSED]
    none = gate_sessions(counts.iloc[0:0])
    assert none.empty and list(none.columns) == ["session", "rows_in", "quarantined", "allowed", "status"]


def test_bad_settings_are_refused_with_their_name():
    with pytest.raises(ValueError, match="expected_defect_rate"):
        GatePolicy(expected_defect_rate=0.0)
    with pytest.raises(ValueError, match="false_hold_rate"):
        GatePolicy(false_hold_rate=1.5)
    counts = pd.DataFrame({"session": [pd.Timestamp("2024-01-02")], "rows_in": [20], "quarantined": [9]})
    with pytest.raises(ValueError, match="release_sessions.*02/01/2024"):
        gate_sessions(counts, released=["02/01/2024"])
