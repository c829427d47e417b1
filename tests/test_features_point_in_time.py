"""Point in time: a feature at session t depends only on rows dated <= t, in prices adjusted as of t.

Cleaned frames are built here from raw bars with the standard backward adjustment, as of the
latest row (what ``cleaned_ohlcv`` holds): a cash dividend D with ex-date t multiplies every
earlier price by ``1 - D / close[t-1]``; a split of r new shares per old share at t divides
every earlier price by r and multiplies every earlier volume by r.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.features import FEATURES, compute_features

SESSIONS = sessions_between("2005-01-03", "2008-12-31")


def adjust_as_of_latest(raw: pd.DataFrame) -> pd.DataFrame:
    """Raw bars -> cleaned-like bars with adj_* backward-adjusted as of each symbol's last row."""
    parts = []
    for _, g in raw.sort_values(["symbol", "date"]).groupby("symbol", sort=True):
        g = g.reset_index(drop=True)
        close = g["close"].to_numpy(dtype=float)
        div, ratio = g["dividend"].to_numpy(dtype=float), g["split_ratio"].to_numpy(dtype=float)
        event_price = np.ones(len(g))  # factor each row's event applies to all earlier rows
        event_volume = np.ones(len(g))
        event_price[1:] = (1.0 - div[1:] / close[:-1]) / ratio[1:]
        event_volume[1:] = ratio[1:]
        # rows before an event get its factor: product over events strictly after the row
        later_price = np.r_[np.cumprod(event_price[::-1])[::-1][1:], 1.0]
        later_volume = np.r_[np.cumprod(event_volume[::-1])[::-1][1:], 1.0]
        for c in ("open", "high", "low", "close"):
            g[f"adj_{c}"] = g[c] * later_price
        g["adj_volume"] = g["volume"] * later_volume
        parts.append(g)
    out = pd.concat(parts, ignore_index=True)
    out["flags"] = pd.array([pd.NA] * len(out), dtype="string")
    return out


def raw_bars(symbol: str, n: int, seed: int, start: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 30.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
    spread = np.abs(rng.normal(0.0, 0.01, n)) * close
    opn = close * (1 + rng.normal(0.0, 0.004, n))
    return pd.DataFrame({
        "symbol": symbol, "date": SESSIONS[start : start + n],
        "open": opn, "high": np.maximum(opn, close) + spread, "low": np.minimum(opn, close) - 0.7 * spread,
        "close": close, "volume": rng.integers(10_000, 2_000_000, n), "dividend": 0.0, "split_ratio": 1.0,
        "source": "synthetic",
    })


def apply_split(raw: pd.DataFrame, row: int, ratio: float) -> pd.DataFrame:
    """The stock really splits at ``row``: it trades at 1/ratio the price on ratio x the shares."""
    raw = raw.copy()
    for c in ("open", "high", "low", "close"):
        raw.loc[row:, c] = raw.loc[row:, c] / ratio
    raw.loc[row:, "volume"] = (raw.loc[row:, "volume"] * ratio).round().astype("int64")
    raw.loc[row, "split_ratio"] = ratio
    return raw


def apply_dividend(raw: pd.DataFrame, row: int, fraction: float) -> pd.DataFrame:
    """Ex-dividend at ``row``: the stock drops by the dividend, D = fraction x previous close."""
    raw = raw.copy()
    d = fraction * raw.loc[row - 1, "close"]
    for c in ("open", "high", "low", "close"):
        raw.loc[row:, c] = raw.loc[row:, c] - d * raw.loc[row:, c] / raw.loc[row, "close"]
    raw.loc[row, "dividend"] = d
    return raw


def apply_flat_day(raw: pd.DataFrame, row: int) -> pd.DataFrame:
    """A forward-filled session: flat at the previous close, no volume (as cleaning produces)."""
    raw = raw.copy()
    raw.loc[row, ["open", "high", "low", "close"]] = raw.loc[row - 1, "close"]
    raw.loc[row, "volume"] = 0
    return raw


def assert_same_features(a: pd.DataFrame, b: pd.DataFrame, rtol: float = 1e-9) -> None:
    """Every feature equal (NaN where the other is NaN) to ``rtol`` relative; values near zero
    are compared on the feature's natural scale (price for dollars, volume for shares)."""
    assert a[["symbol", "date"]].equals(b[["symbol", "date"]])
    price = b["price"].to_numpy()
    for spec in FEATURES:
        x, y = a[spec.name].to_numpy(), b[spec.name].to_numpy()
        assert np.array_equal(np.isnan(x), np.isnan(y)), spec.name
        scale = {"price": price * 1e-3, "volume": 1.0}.get(spec.unit, 1e-3)
        bound = rtol * np.maximum(np.maximum(np.abs(x), np.abs(y)), scale)
        bad = np.abs(x - y) > bound
        assert not bad.any(), (spec.name, x[bad][:3], y[bad][:3])


def features_until(cleaned: pd.DataFrame, t) -> pd.DataFrame:
    out = compute_features(cleaned)
    return out[out["date"] <= t].reset_index(drop=True)


#: (kind, position as a fraction of the allowed rows, split ratio)
event = st.tuples(st.sampled_from(["split", "dividend", "flat"]), st.floats(0.0, 1.0),
                  st.sampled_from([2.0, 3.0, 0.5, 1.5, 4.0]))


@st.composite
def scenarios(draw):
    n_symbols = draw(st.integers(1, 3))
    n = draw(st.integers(40, 90))
    t = draw(st.integers(25, n - 2))  # the session we look at: row index t
    seed = draw(st.integers(0, 2**31 - 1))
    before = draw(st.lists(event, max_size=3))
    after_a = draw(st.lists(event, max_size=3))
    after_b = draw(st.lists(event, max_size=3))
    tail_b = draw(st.integers(0, 40))  # B's rows after t: fewer, more, or none
    late = draw(st.lists(st.integers(0, 20), min_size=n_symbols, max_size=n_symbols))
    return n_symbols, n, t, seed, before, after_a, after_b, tail_b, late


def _with_events(raw: pd.DataFrame, events, lo: int, hi: int) -> pd.DataFrame:
    """Place events at rows in [lo, hi) (positions drawn as fractions), at most one per row."""
    used = set()
    for kind, where, ratio in events:
        if hi <= lo:
            break
        row = lo + min(int(where * (hi - lo)), hi - lo - 1)
        if row in used or row < 1:
            continue
        used.add(row)
        if kind == "split":
            raw = apply_split(raw, row, ratio)
        elif kind == "dividend":
            raw = apply_dividend(raw, row, 0.002 + 0.05 * where)
        else:
            raw = apply_flat_day(raw, row)
    return raw


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_changing_rows_after_t_never_changes_features_at_or_before_t(scenario):
    n_symbols, n, t, seed, before, after_a, after_b, tail_b, late = scenario
    raws_a, raws_b = [], []
    for i in range(n_symbols):
        start = late[i]
        rows_t = t - start  # row index of session t within this symbol
        if rows_t < 2:
            continue
        base = raw_bars(f"S{i}", n - start, seed + i, start)
        base = _with_events(base, before, 1, rows_t + 1)
        a = _with_events(base, after_a, rows_t + 1, len(base))
        # B: same history up to t, then a different future of a different length
        future = raw_bars(f"S{i}", rows_t + 1 + tail_b, seed + 1000 + i, start).iloc[rows_t + 1 :]
        level = base.loc[rows_t, "close"] / 30.0
        future = future.assign(**{c: future[c] * level for c in ("open", "high", "low", "close")})
        b = pd.concat([base.iloc[: rows_t + 1], future], ignore_index=True)
        b = _with_events(b, after_b, rows_t + 1, len(b))
        raws_a.append(a)
        raws_b.append(b)
    if not raws_a:
        return
    t_date = SESSIONS[t]
    fa = features_until(adjust_as_of_latest(pd.concat(raws_a, ignore_index=True)), t_date)
    fb = features_until(adjust_as_of_latest(pd.concat(raws_b, ignore_index=True)), t_date)
    assert_same_features(fa, fb)
    # ... and equal to what a trader computed at the close of t, from data that ended at t.
    cut = [r[r["date"] <= t_date] for r in raws_a]
    fc = features_until(adjust_as_of_latest(pd.concat(cut, ignore_index=True)), t_date)
    assert_same_features(fa, fc)


N, T = 300, 260


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return raw_bars("AAA", N, seed=42)


def _at_t(raw: pd.DataFrame) -> pd.Series:
    out = compute_features(adjust_as_of_latest(raw))
    return out.iloc[T]


def test_split_after_t_leaves_dollar_features_unchanged(history):
    plain = _at_t(history)
    split_raw = apply_split(history, T + 5, 2.0)
    cleaned = adjust_as_of_latest(split_raw)
    assert cleaned.loc[T, "adj_close"] == pytest.approx(history.loc[T, "close"] / 2)  # as-of-latest halves history
    assert cleaned.loc[T, "adj_volume"] == pytest.approx(history.loc[T, "volume"] * 2)
    split = compute_features(cleaned).iloc[T]

    h, l, c = (history[k].to_numpy(dtype=float)[: T + 1] for k in ("high", "low", "close"))
    v = history["volume"].to_numpy(dtype=float)[: T + 1]
    expected = {
        "atr_14": talib.ATR(h, l, c, timeperiod=14)[-1],
        "sma_20": c[-20:].mean(),
        "sma_200": c[-200:].mean(),
        "donchian_high_20": h[-20:].max(),
        "vwap_20": ((h + l + c) / 3 * v)[-20:].sum() / v[-20:].sum(),
        "obv_20": (np.sign(np.diff(c)) * v[1:])[-20:].sum(),  # shares as traded: divided, not multiplied
        "dollar_volume_20": (c * v)[-20:].mean(),
        "price": c[-1],
    }
    for name, value in expected.items():
        assert plain[name] == pytest.approx(value, rel=1e-10), name
        assert split[name] == pytest.approx(value, rel=1e-10), name


def test_dividend_after_t_leaves_features_unchanged(history):
    plain = _at_t(history)
    paid = _at_t(apply_dividend(history, T + 1, 0.03))
    for spec in FEATURES:
        assert paid[spec.name] == pytest.approx(plain[spec.name], rel=1e-9, abs=1e-12, nan_ok=True), spec.name


def test_split_before_t_is_in_the_dollars_of_t(history):
    """A 3:1 split inside the window: SMA at t averages pre-split prices divided by 3 (as of t)."""
    raw = apply_split(history, T - 5, 3.0)
    out = compute_features(adjust_as_of_latest(raw)).iloc[T]
    c = raw["close"].to_numpy(dtype=float)[: T + 1].copy()
    v = raw["volume"].to_numpy(dtype=float)[: T + 1].copy()
    c[: T - 5] /= 3.0
    v[: T - 5] *= 3.0
    assert out["sma_20"] == pytest.approx(c[-20:].mean(), rel=1e-10)
    assert out["obv_20"] == pytest.approx((np.sign(np.diff(c)) * v[1:])[-20:].sum(), rel=1e-10)
    # a later 2:1 split does not move either
    later = compute_features(adjust_as_of_latest(apply_split(raw, T + 3, 2.0))).iloc[T]
    assert later["sma_20"] == pytest.approx(out["sma_20"], rel=1e-12)
    assert later["obv_20"] == pytest.approx(out["obv_20"], rel=1e-12)


def test_zero_volume_session_gets_its_volume_factor_from_split_ratios(history):
    """At a forward-filled row (volume 0, adj_volume 0), adj_volume/volume is undefined; the
    factor comes from the split ratios, so OBV at that row is still in the shares of t."""
    raw = apply_flat_day(history, T)
    plain = compute_features(adjust_as_of_latest(raw)).iloc[T]
    split = compute_features(adjust_as_of_latest(apply_split(raw, T + 2, 2.0))).iloc[T]
    assert split["obv_20"] == pytest.approx(plain["obv_20"], rel=1e-10)
    assert split["vwap_20"] == pytest.approx(plain["vwap_20"], rel=1e-10)


def test_cent_price_ties_do_not_make_adx_depend_on_later_events():
    """Tick-quantised prices tie (up-move == down-move) often; a later split/dividend multiplies
    the history by a factor that breaks such ties in the last bit. ADX must not notice.
    (Ticks of 1/64 dollar, as traded before decimalisation, are exact in binary.)"""
    rng = np.random.default_rng(5)
    n, tick = 400, 1 / 64
    mid = 25.0 + np.cumsum(rng.choice([-2, 0, 0, 2], n)) * tick
    half = rng.integers(1, 5, n) * tick  # up-move == down-move whenever mid is unchanged and the range widens
    high, low, close = mid + half, mid - half, mid + rng.integers(-1, 2, n) * tick
    raw = raw_bars("TIE", n, seed=1).assign(open=close, high=high, low=low, close=close)
    up, down = np.diff(high), -np.diff(low)
    assert ((up == down) & (up > 0)).sum() > 40  # plenty of exact ties
    t = 300
    base = compute_features(adjust_as_of_latest(raw)).iloc[: t + 1]
    later = apply_dividend(apply_split(raw, t + 10, 3.0), t + 40, 0.013)
    moved = compute_features(adjust_as_of_latest(later)).iloc[: t + 1]
    assert_same_features(base, moved)
    # talib.ADX on the as-of-latest series would not have been the as-of-t ADX:
    adj = adjust_as_of_latest(later)
    h, l, c = (adj[f"adj_{k}"].to_numpy(dtype=float)[: t + 1] for k in ("high", "low", "close"))
    assert not np.allclose(talib.ADX(h, l, c, timeperiod=14)[30:], base["adx_14"].to_numpy()[30:], rtol=1e-9)


@pytest.mark.parametrize("cut", ["2005-02-25", "2007-09-10", "2014-06-06", "2020-08-28"])
def test_real_history_features_equal_what_was_computable_at_t(sp500_bars, cut):
    """Real splits and dividends: features at t from the full history equal those from the
    history that ended at t, adjusted as of t (what a trader had at that close)."""
    raw = sp500_bars[sp500_bars["symbol"].isin(["AAPL", "NVDA", "KO", "AZO"])]
    t = pd.Timestamp(cut)
    full = compute_features(adjust_as_of_latest(raw))
    then = compute_features(adjust_as_of_latest(raw[raw["date"] <= t]))
    assert_same_features(then[then["date"] == t].reset_index(drop=True), full[full["date"] == t].reset_index(drop=True))
