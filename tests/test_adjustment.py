"""Backward adjustment: hand-computed factors, point in time, incremental contract, properties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphatwin_pipelines.adjustment import (
    FLAG_NO_PREV_CLOSE,
    adjust,
    adjust_session,
    adjustment_factors,
    corporate_actions,
    symbols_needing_rebuild,
)
from alphatwin_pipelines.schema import empty_bars

DATES = pd.bdate_range("2021-01-04", periods=40)


def make_bars(symbol: str, closes, dividends=None, splits=None, volume=1000) -> pd.DataFrame:
    n = len(closes)
    close = np.asarray(closes, dtype=float)
    return pd.DataFrame(
        {
            "symbol": symbol,
            "date": DATES[:n].astype("datetime64[ns]"),
            "open": close * 0.99,
            "high": close * 1.02,
            "low": close * 0.97,
            "close": close,
            "volume": np.full(n, volume, dtype=np.int64),
            "dividend": np.asarray(dividends if dividends is not None else [0.0] * n, dtype=float),
            "split_ratio": np.asarray(splits if splits is not None else [1.0] * n, dtype=float),
            "source": "test",
        }
    )


def adj_close(bars, **kw) -> np.ndarray:
    return adjust(bars, **kw)["adj_close"].to_numpy()


def test_two_for_one_split_halves_earlier_prices_and_doubles_volume():
    bars = make_bars("S", [100, 102, 51, 52], splits=[1, 1, 2, 1])
    out = adjust(bars)
    np.testing.assert_allclose(out["adj_close"], [50, 51, 51, 52], rtol=1e-15)
    np.testing.assert_allclose(out["adj_open"], np.array([50, 51, 51, 52]) * 0.99, rtol=1e-15)
    np.testing.assert_allclose(out["adj_high"], np.array([50, 51, 51, 52]) * 1.02, rtol=1e-15)
    np.testing.assert_allclose(out["adj_volume"], [2000, 2000, 1000, 1000], rtol=1e-15)
    assert out["adj_volume"].dtype == np.float64
    for col in ("open", "close", "volume", "dividend"):  # raw columns stay beside, untouched
        pd.testing.assert_series_equal(out[col], bars[col])


def test_dividend_uses_the_previous_close():
    bars = make_bars("D", [50, 51, 50.5, 51], dividends=[0, 0, 1.0, 0])
    f = 1 - 1.0 / 51  # previous close is 51
    np.testing.assert_allclose(adj_close(bars), [50 * f, 51 * f, 50.5, 51], rtol=1e-15)
    np.testing.assert_allclose(adjust(bars)["adj_volume"], 1000.0)  # dividends never touch volume


def test_split_then_dividend_uses_the_raw_post_split_close():
    # 2:1 split on day 2, then a 0.50 dividend on day 4. The dividend's "previous close" is the
    # raw close of day 3 (50, already post-split), NOT an adjusted price.
    bars = make_bars("B", [100, 104, 52, 50, 49.8, 50], dividends=[0, 0, 0, 0, 0.5, 0], splits=[1, 1, 2, 1, 1, 1])
    f_div = 1 - 0.5 / 50
    expected = [100 * f_div / 2, 104 * f_div / 2, 52 * f_div, 50 * f_div, 49.8, 50]
    np.testing.assert_allclose(adj_close(bars), expected, rtol=1e-15)
    np.testing.assert_allclose(adjust(bars)["adj_volume"], [2000, 2000, 1000, 1000, 1000, 1000])
    events = corporate_actions(bars)
    assert list(events["date"]) == [DATES[2], DATES[4]]
    assert events["prev_close"].tolist() == [104.0, 50.0]
    np.testing.assert_allclose(events["dividend_factor"], [1.0, f_div])
    np.testing.assert_allclose(events["split_factor"], [0.5, 1.0])
    factors = adjustment_factors(events)
    np.testing.assert_allclose(factors["cum_price_factor"], [f_div / 2, f_div])
    np.testing.assert_allclose(factors["cum_volume_factor"], [2.0, 1.0])


def test_dividend_then_split():
    bars = make_bars("C", [100, 99, 50, 51], dividends=[0, 1.0, 0, 0], splits=[1, 1, 2, 1])
    np.testing.assert_allclose(adj_close(bars), [100 * 0.99 / 2, 99 / 2, 50, 51], rtol=1e-15)


def test_split_and_dividend_on_the_same_row_restate_the_previous_close():
    # The dividend is per new share, so the previous close on that basis is 100 / 2 = 50.
    bars = make_bars("E", [100, 49, 50], dividends=[0, 0.5, 0], splits=[1, 2, 1])
    f = (1 - 0.5 / (100 / 2)) / 2
    np.testing.assert_allclose(adj_close(bars), [100 * f, 49, 50], rtol=1e-15)


def test_unpriceable_events_are_neutral_and_flagged():
    bars = make_bars("F", [10, 11, 12], dividends=[0.2, 0, 0], splits=[1, 1, 1])
    events = corporate_actions(bars)
    assert events["flag"].tolist() == [FLAG_NO_PREV_CLOSE]
    assert events["dividend_factor"].tolist() == [1.0]
    np.testing.assert_array_equal(adj_close(bars), [10, 11, 12])
    huge = make_bars("G", [10, 11, 12], dividends=[0, 0, 11.5])
    assert corporate_actions(huge)["flag"].tolist() == ["dividend_ge_prev_close"]
    np.testing.assert_array_equal(adj_close(huge), [10, 11, 12])


def test_as_of_before_an_event_leaves_prices_unadjusted_and_drops_later_rows():
    bars = make_bars("S", [100, 102, 51, 52], splits=[1, 1, 2, 1])
    before = adjust(bars, as_of=DATES[1])
    assert len(before) == 2
    np.testing.assert_array_equal(before["adj_close"], [100, 102])
    np.testing.assert_array_equal(before["adj_volume"], [1000, 1000])
    np.testing.assert_allclose(adj_close(bars, as_of=DATES[2]), [50, 51, 51])
    # factors computed from the full history are re-cut to as_of, never leaking later events
    full_events = corporate_actions(bars)
    np.testing.assert_array_equal(adjust(bars, factors=full_events, as_of=DATES[1])["adj_close"], [100, 102])
    np.testing.assert_array_equal(
        adjust(bars, factors=adjustment_factors(full_events), as_of=DATES[1])["adj_close"], [100, 102]
    )


def test_latest_session_is_never_adjusted_even_on_an_event_day():
    bars = pd.concat(
        [make_bars("A", [10, 11, 12, 6], splits=[1, 1, 1, 2]), make_bars("B", [5, 5, 4.9, 5], dividends=[0, 0, 0, 0.1])]
    )
    out = adjust(bars)
    last = out[out["date"] == out["date"].max()]
    np.testing.assert_array_equal(last["adj_close"], last["close"])
    np.testing.assert_array_equal(last["adj_volume"], last["volume"].astype(float))


def test_no_mutation_and_row_order_independence():
    bars = pd.concat(
        [
            make_bars("A", [100, 102, 51, 52], splits=[1, 1, 2, 1]),
            make_bars("B", [50, 51, 50.5, 51], dividends=[0, 0, 1, 0]),
        ],
        ignore_index=True,
    )
    shuffled = bars.sample(frac=1.0, random_state=3)
    snapshot = shuffled.copy(deep=True)
    out = adjust(shuffled)
    events = corporate_actions(shuffled)
    adjustment_factors(events)
    pd.testing.assert_frame_equal(shuffled, snapshot)
    assert list(out.index) == list(shuffled.index)
    pd.testing.assert_frame_equal(out.sort_index(), adjust(bars))


def test_empty_input():
    empty = empty_bars()
    assert corporate_actions(empty).empty and adjustment_factors(corporate_actions(empty)).empty
    out = adjust(empty)
    assert out.empty and out["adj_volume"].dtype == np.float64
    assert adjust_session(out, empty).rebuild == set()


def test_duplicate_rows_are_refused():
    bars = make_bars("A", [1, 2, 3])
    with pytest.raises(ValueError, match="duplicate"):
        adjust(pd.concat([bars, bars.iloc[[1]]]))


# --- incremental contract ------------------------------------------------------------------


def _universe(n: int) -> pd.DataFrame:
    return pd.concat(
        [
            make_bars("A", np.linspace(100, 120, n), splits=[1] * (n // 2) + [2] + [1] * (n - n // 2 - 1)),
            make_bars("B", np.linspace(50, 40, n), dividends=[0] * 3 + [0.4] + [0] * (n - 4)),
            make_bars("C", np.linspace(20, 25, n)),
        ],
        ignore_index=True,
    )


def _assemble(previous, update, raw_all):
    keep = previous[~previous["symbol"].isin(update.rebuild)]
    fresh = update.session[~update.session["symbol"].isin(update.rebuild)]
    rebuilt = adjust(raw_all[raw_all["symbol"].isin(update.rebuild)])
    return pd.concat([keep, fresh, rebuilt]).sort_values(["symbol", "date"]).reset_index(drop=True)


def test_session_without_events_touches_nothing_else():
    raw = _universe(12)
    history, new = raw[raw["date"] < DATES[11]], raw[raw["date"] == DATES[11]]
    previous = adjust(history)
    update = adjust_session(previous, new)
    assert update.rebuild == set()
    np.testing.assert_array_equal(update.session["adj_close"], new["close"])
    full = adjust(raw).sort_values(["symbol", "date"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(_assemble(previous, update, raw), full, check_exact=False, rtol=1e-14)


def test_session_with_an_event_asks_for_that_symbol_only():
    raw = _universe(12)
    raw.loc[(raw["symbol"] == "C") & (raw["date"] == DATES[11]), "dividend"] = 0.3
    history, new = raw[raw["date"] < DATES[11]], raw[raw["date"] == DATES[11]]
    previous = adjust(history)
    update = adjust_session(previous, new)
    assert update.rebuild == {"C"}
    full = adjust(raw).sort_values(["symbol", "date"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(_assemble(previous, update, raw), full, check_exact=False, rtol=1e-14)


def test_adjust_session_refuses_replays_and_bulk():
    raw = _universe(6)
    previous = adjust(raw)
    with pytest.raises(ValueError, match="not after"):
        adjust_session(previous, raw[raw["date"] == DATES[5]])
    with pytest.raises(ValueError, match="one session"):
        adjust_session(previous, raw)


def test_symbols_needing_rebuild():
    raw = _universe(10)
    old = corporate_actions(raw)
    assert symbols_needing_rebuild(old, corporate_actions(raw)) == set()
    added = raw.copy()
    added.loc[(added["symbol"] == "C") & (added["date"] == DATES[7]), "dividend"] = 0.2
    assert symbols_needing_rebuild(old, corporate_actions(added)) == {"C"}
    revised = raw.copy()  # a revised close before B's ex-date changes B's dividend factor
    revised.loc[(revised["symbol"] == "B") & (revised["date"] == DATES[2]), "close"] += 1
    assert symbols_needing_rebuild(old, corporate_actions(revised)) == {"B"}
    removed = raw[~((raw["symbol"] == "A") & (raw["split_ratio"] != 1))]
    assert symbols_needing_rebuild(old, corporate_actions(removed)) == {"A"}


# --- properties ----------------------------------------------------------------------------

SPLITS = st.sampled_from([1.0] * 6 + [2.0, 3.0, 1.5, 0.5, 0.25, 7.0])


@st.composite
def symbol_bars(draw, symbol="P", min_size=3, max_size=30):
    n = draw(st.integers(min_size, max_size))
    closes = draw(st.lists(st.floats(1.0, 1000.0), min_size=n, max_size=n))
    splits = [1.0] + draw(st.lists(SPLITS, min_size=n - 1, max_size=n - 1))
    fracs = draw(st.lists(st.sampled_from([0.0] * 4 + [0.001, 0.01, 0.05, 0.3]), min_size=n, max_size=n))
    # dividend per new share, kept below the previous close restated on the new share basis
    dividends = [0.0] + [fracs[i] * closes[i - 1] / splits[i] for i in range(1, n)]
    return make_bars(symbol, closes, dividends, splits)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bars=symbol_bars(), other=symbol_bars(), data=st.data())
def test_point_in_time_depends_only_on_rows_up_to_as_of(bars, other, data):
    k = data.draw(st.integers(0, len(bars) - 1))
    t = bars["date"].iloc[k]
    changed = bars.copy()
    later = changed["date"] > t
    # rewrite the future with another path, including its corporate actions
    m = int(later.sum())
    for col in ("open", "high", "low", "close", "dividend", "split_ratio"):
        changed.loc[later, col] = np.resize(other[col].to_numpy(), m)
    a, b = adjust(bars, as_of=t), adjust(changed, as_of=t)
    assert a["date"].max() == t and len(a) == k + 1
    pd.testing.assert_frame_equal(a, b)


@settings(max_examples=200, deadline=None)
@given(bars=symbol_bars(min_size=2))
def test_adjusted_returns_equal_raw_returns_with_dividends_and_splits(bars):
    out = adjust(bars)
    adj = out["adj_close"].to_numpy()
    c, d, r = (bars[k].to_numpy() for k in ("close", "dividend", "split_ratio"))
    adj_ret = adj[1:] / adj[:-1] - 1
    # The standard method's exact identity: the dividend is removed from the previous close
    # (restated per new share), i.e. r * close_t / (close_{t-1} - r * D_t).
    exact = r[1:] * c[1:] / (c[:-1] - r[1:] * d[1:]) - 1
    np.testing.assert_allclose(adj_ret, exact, rtol=1e-12, atol=1e-12)
    # The "(close + D) / prev close * r" total return differs only by a second-order term.
    total = (c[1:] + d[1:]) / c[:-1] * r[1:] - 1
    bound = r[1:] * d[1:] * np.abs(r[1:] * c[1:] + r[1:] * d[1:] - c[:-1]) / (c[:-1] * (c[:-1] - r[1:] * d[1:]))
    # Rounding scales with the size of the return (hypothesis finds returns of several thousand).
    assert np.all(np.abs(adj_ret - total) <= bound * (1 + 1e-9) + 1e-12 * np.maximum(1.0, np.abs(total)))
    no_dividend = d[1:] == 0
    np.testing.assert_allclose(adj_ret[no_dividend], total[no_dividend], rtol=1e-12, atol=1e-12)
    # and the latest session is never adjusted
    assert adj[-1] == c[-1]
