"""Feature engine: values against independent pandas/TA-Lib computations, normalisation,
incremental runs, the spec table, input safety, and the Qlib 14-feature peer implementation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import talib

from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.features import (
    FEATURES,
    compute_features,
    feature_names,
    feature_table_markdown,
    get_spec,
    max_lookback,
)
from alphatwin_pipelines.features.qlib14 import QLIB14, QLIB14_COLUMNS, qlib14, qlib14_pandas

ANNUAL = math.sqrt(252)


def random_walk_bars(symbols, n, seed=0, start="2000-01-03", late_start=None) -> pd.DataFrame:
    """Cleaned-like bars for seeded random-walk symbols, no corporate actions (adj = raw)."""
    rng = np.random.default_rng(seed)
    dates = sessions_between(start, "2030-12-31")[:n]
    frames = []
    for i, sym in enumerate(symbols):
        d = dates[(late_start or {}).get(sym, 0):]
        m = len(d)
        close = 20.0 * (1 + i) * np.exp(np.cumsum(rng.normal(0.0002, 0.02, m)))
        spread = np.abs(rng.normal(0.0, 0.012, m)) * close
        high, low = close + spread, close - 0.8 * spread
        opn = np.clip(close * (1 + rng.normal(0, 0.006, m)), low, high)
        volume = rng.integers(50_000, 3_000_000, m)
        frames.append(pd.DataFrame({
            "symbol": sym, "date": d, "open": opn, "high": high, "low": low, "close": close,
            "volume": volume, "dividend": 0.0, "split_ratio": 1.0, "source": "synthetic",
        }))
    out = pd.concat(frames, ignore_index=True)
    for c in ("open", "high", "low", "close"):
        out[f"adj_{c}"] = out[c]
    out["adj_volume"] = out["volume"].astype("float64")
    out["flags"] = pd.array([pd.NA] * len(out), dtype="string")
    return out.astype({"symbol": "string", "source": "string"})


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return random_walk_bars(["AAA", "BBB"], 400, seed=7)


@pytest.fixture(scope="module")
def features(bars) -> pd.DataFrame:
    return compute_features(bars)


def _per_symbol(bars, features):
    for sym, g in bars.groupby("symbol", sort=True):
        f = features[features["symbol"] == sym].reset_index(drop=True)
        yield g.reset_index(drop=True), f


def _check(actual, expected, rtol=1e-10, atol=1e-12):
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float),
                               rtol=rtol, atol=atol, equal_nan=True)


def test_moving_averages_and_returns_match_pandas(bars, features):
    for g, f in _per_symbol(bars, features):
        c = g["close"]
        for n in (10, 20, 50, 200):
            _check(f[f"sma_{n}"], c.rolling(n).mean())
            w = np.arange(1, n + 1, dtype=float)
            _check(f[f"wma_{n}"], c.rolling(n).apply(lambda x: np.dot(x, w) / w.sum(), raw=True))
        for k in (1, 5, 20):
            _check(f[f"ret_{k}d"], c.pct_change(k, fill_method=None))
            _check(f[f"logret_{k}d"], np.log(c / c.shift(k)))
        _check(f["price"], c, rtol=0, atol=0)


def test_volatility_matches_pandas(bars, features):
    for g, f in _per_symbol(bars, features):
        lr = np.log(g["close"] / g["close"].shift(1))
        for n in (20, 60):
            _check(f[f"vol_{n}"], lr.rolling(n).std(ddof=1) * ANNUAL, rtol=1e-9)
        hl2 = np.log(g["high"] / g["low"]) ** 2
        _check(f["parkinson_vol_20"], np.sqrt(hl2.rolling(20).mean() / (4 * math.log(2))) * ANNUAL)


def test_bollinger_matches_pandas(bars, features):
    for g, f in _per_symbol(bars, features):
        c = g["close"]
        mid, sd = c.rolling(20).mean(), c.rolling(20).std(ddof=0)  # Bollinger: population std
        upper, lower = mid + 2 * sd, mid - 2 * sd
        _check(f["bb_mid"], mid)
        _check(f["bb_upper"], upper, rtol=1e-9)
        _check(f["bb_lower"], lower, rtol=1e-9)
        _check(f["bb_pctb"], (c - lower) / (upper - lower), rtol=1e-8, atol=1e-9)
        _check(f["bb_bandwidth"], (upper - lower) / mid, rtol=1e-8)


def test_volume_features_match_pandas(bars, features):
    for g, f in _per_symbol(bars, features):
        c, v, h, l = g["close"], g["volume"].astype(float), g["high"], g["low"]
        signed = np.sign(c.diff()) * v
        _check(f["obv_20"], signed.rolling(20).sum())
        typical = (h + l + c) / 3
        _check(f["vwap_20"], (typical * v).rolling(20).sum() / v.rolling(20).sum())
        _check(f["volume_roc_10"], v / v.shift(10) - 1)
        _check(f["dollar_volume_20"], (c * v).rolling(20).mean())
        _check(f["donchian_high_20"], h.rolling(20).max(), rtol=0, atol=0)
        _check(f["donchian_low_20"], l.rolling(20).min(), rtol=0, atol=0)


def test_talib_indicators_match_direct_calls(bars, features):
    for g, f in _per_symbol(bars, features):
        h, l, c = (np.ascontiguousarray(g[k].to_numpy(dtype=float)) for k in ("high", "low", "close"))
        _check(f["rsi_14"], talib.RSI(c, timeperiod=14), rtol=1e-12)
        line, signal, hist = talib.MACD(c, fastperiod=12, slowperiod=26, signalperiod=9)
        _check(f["macd"], line, rtol=1e-12)
        _check(f["macd_signal"], signal, rtol=1e-12)
        _check(f["macd_hist"], hist, rtol=1e-12)
        _check(f["atr_14"], talib.ATR(h, l, c, timeperiod=14), rtol=1e-12)
        _check(f["adx_14"], talib.ADX(h, l, c, timeperiod=14), rtol=1e-12)
        k, d = talib.STOCH(h, l, c, fastk_period=14, slowk_period=3, slowk_matype=0, slowd_period=3, slowd_matype=0)
        _check(f["stoch_k"], k, rtol=1e-12)
        _check(f["stoch_d"], d, rtol=1e-12)
        for n in (10, 20, 50):
            _check(f[f"ema_{n}"], talib.EMA(c, timeperiod=n), rtol=1e-12)


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    # 12 symbols, two of them listed later, so early sessions have fewer names (and NaNs).
    return random_walk_bars([f"S{i:02d}" for i in range(12)], 320, seed=11, late_start={"S03": 40, "S07": 290})


@pytest.fixture(scope="module")
def panel_features(panel) -> pd.DataFrame:
    return compute_features(panel)


def test_cross_sectional_z_scores_have_mean_0_std_1(panel_features):
    for base in ("ret_1d", "ret_20d", "rsi_14", "vol_20", "bb_pctb"):
        z = panel_features[f"{base}_cs_z"]
        by = z.groupby(panel_features["date"])
        stats = pd.DataFrame({"n": by.count(), "mean": by.mean(), "std": by.std(ddof=0)})
        stats = stats[stats["n"] >= 2]
        assert len(stats) > 200
        np.testing.assert_allclose(stats["mean"], 0.0, atol=1e-12)
        np.testing.assert_allclose(stats["std"], 1.0, rtol=1e-12)


def test_cross_sectional_scalings_match_pandas(panel_features):
    f = panel_features
    for base in ("ret_5d", "rsi_14", "vol_60"):
        x = f[base]
        by = x.groupby(f["date"])
        lo, hi = by.transform("min"), by.transform("max")
        _check(f[f"{base}_cs_minmax"], ((x - lo) / (hi - lo)).where(hi > lo), rtol=1e-12)
        med = by.transform("median")
        q1, q3 = by.transform(lambda s: s.quantile(0.25)), by.transform(lambda s: s.quantile(0.75))
        n = by.transform("count")
        _check(f[f"{base}_cs_robust"], ((x - med) / (q3 - q1)).where((n >= 2) & (q3 > q1)), rtol=1e-10)
        _check(f[f"{base}_cs_rank"], by.rank(pct=True), rtol=1e-12)


def test_cross_sectional_rank_averages_ties():
    from alphatwin_pipelines.features import normalise as nrm

    values = np.array([3.0, 1.0, 3.0, np.nan, 2.0, 5.0, 5.0])
    sessions = nrm.sessions_of(np.array([0, 0, 0, 0, 0, 1, 1]))
    ranks = nrm.cs_rank(values, sessions)
    expected = pd.Series(values).groupby([0, 0, 0, 0, 0, 1, 1]).rank(pct=True).to_numpy()
    _check(ranks, expected, rtol=0, atol=1e-15)


def test_time_series_z_score_uses_past_window(panel_features):
    f = panel_features
    for base in ("ret_1d", "rsi_14"):
        expected = f.groupby("symbol")[base].transform(
            lambda s: (s - s.rolling(252).mean()) / s.rolling(252).std(ddof=0))
        _check(f[f"{base}_ts_z"], expected, rtol=1e-8, atol=1e-9)
        assert f[f"{base}_ts_z"].notna().sum() > 0


def _relative_gap(inc: pd.DataFrame, full: pd.DataFrame) -> dict[str, float]:
    """Largest |inc - full| per column, relative to max(|full|, unit scale)."""
    out = {}
    price = full["price"].to_numpy()
    for spec in FEATURES:
        a, b = inc[spec.name].to_numpy(), full[spec.name].to_numpy()
        assert np.array_equal(np.isnan(a), np.isnan(b)), spec.name
        scale = price if spec.unit == "price" else 1.0
        with np.errstate(invalid="ignore"):
            gap = np.abs(a - b) / np.maximum(np.abs(b), scale if spec.unit != "volume" else np.abs(b).max())
        out[spec.name] = float(np.nanmax(gap)) if np.isfinite(gap).any() else 0.0
    return out


def test_incremental_window_matches_full_history():
    lookback = max_lookback()
    bars = random_walk_bars(["AAA", "BBB", "CCC", "NEW"], lookback + 200, seed=3, late_start={"NEW": lookback + 50})
    full = compute_features(bars)
    dates = np.sort(bars["date"].unique())
    recursive = {"ema_10", "ema_20", "ema_50", "rsi_14", "macd", "macd_signal", "macd_hist",
                 "atr_14", "adx_14"}
    recursive |= {s.name for s in FEATURES if s.of in recursive}
    for t in dates[-3:]:
        window = dates[dates <= t][-(lookback + 1):]  # max_lookback() sessions of history plus t
        history = bars[bars["date"].isin(window)]
        inc = compute_features(history, sessions=pd.DatetimeIndex([t]))
        ref = full[full["date"] == t].reset_index(drop=True)
        assert inc[["symbol", "date"]].equals(ref[["symbol", "date"]])
        gaps = _relative_gap(inc, ref)
        for name, gap in gaps.items():
            limit = 1e-6 if name in recursive else 1e-9
            assert gap < limit, (name, gap)


def test_sessions_argument_returns_only_those_rows(bars, features):
    dates = np.sort(bars["date"].unique())
    picked = pd.DatetimeIndex(dates[[10, 250, -1]])
    out = compute_features(bars, sessions=picked)
    assert set(out["date"]) == set(picked)
    ref = features[features["date"].isin(picked)].reset_index(drop=True)
    pd.testing.assert_frame_equal(out, ref, rtol=1e-12)
    assert len(compute_features(bars, sessions=pd.DatetimeIndex([]))) == 0


def test_spec_table_lists_every_output_column(features):
    assert list(features.columns) == ["symbol", "date", *feature_names()]
    table = feature_table_markdown()
    assert table.startswith("| name | description | parameters | lookback |")
    for spec in FEATURES:
        assert f"| `{spec.name}` |" in table
        assert spec.lookback >= 1 and spec.unit in ("price", "volume", "ratio", "count")
    assert max_lookback() == max(s.lookback for s in FEATURES)
    assert "ema_200" not in feature_names()  # its warm-up would dominate every daily increment
    assert features["date"].dtype == "datetime64[ns]"
    assert all(features[s.name].dtype == "float64" for s in FEATURES)


def test_inputs_are_not_mutated_and_row_order_is_irrelevant(bars, features):
    shuffled = bars.sample(frac=1.0, random_state=5)
    before = shuffled.copy(deep=True)
    out = compute_features(shuffled, sessions=pd.DatetimeIndex(bars["date"].unique()))
    pd.testing.assert_frame_equal(shuffled, before)
    pd.testing.assert_frame_equal(out, features, rtol=1e-13)
    again = bars.copy(deep=True)
    compute_features(bars)
    pd.testing.assert_frame_equal(bars, again)


def test_unusable_rows_get_nan_and_are_skipped(bars):
    broken = bars.copy()
    row = broken.index[(broken["symbol"] == "AAA")][100]
    broken.loc[row, ["adj_close", "close"]] = np.nan
    out = compute_features(broken)
    assert out.loc[row, feature_names()].isna().all()
    # Later rows still compute (the bad row is treated as a missing session).
    aaa = out[out["symbol"] == "AAA"]
    assert aaa["sma_20"].iloc[-1] == pytest.approx(
        bars.loc[(bars["symbol"] == "AAA"), "close"].drop(index=row).iloc[-20:].mean(), rel=1e-12)


def test_duplicates_and_missing_columns_are_refused(bars):
    with pytest.raises(ValueError, match="duplicate"):
        compute_features(pd.concat([bars, bars.iloc[[5]]]))
    with pytest.raises(ValueError, match="adj_close"):
        compute_features(bars.drop(columns=["adj_close"]))


# --- Qlib's 14 features -------------------------------------------------------------------


def test_qlib14_windows_never_cross_symbols():
    bars = random_walk_bars(["AAA", "BBB"], 60, seed=2)
    out = qlib14(bars)
    for sym in ("AAA", "BBB"):
        f = out[out["symbol"] == sym].reset_index(drop=True)
        for name, window in (("RET1", 2), ("MA20", 20), ("STD20", 20), ("CORR10", 10), ("MAX20", 20), ("RSV14", 14)):
            assert f[name].iloc[: window - 1].isna().all() and f[name].iloc[window - 1 :].notna().all(), name
    ref = qlib14_pandas(bars).astype({"symbol": out["symbol"].dtype})
    pd.testing.assert_frame_equal(out, ref, rtol=1e-9, atol=1e-12)


QLIB_SYMBOLS = ["AAPL", "MSFT", "JPM", "XOM", "KO", "CARR"]


@pytest.fixture(scope="module")
def qlib_sample(sp500_bars) -> pd.DataFrame:
    return sp500_bars[sp500_bars["symbol"].isin(QLIB_SYMBOLS)].reset_index(drop=True)


def test_qlib14_matches_pandas_reference_on_real_symbols(qlib_sample):
    fast, ref = qlib14(qlib_sample), qlib14_pandas(qlib_sample)
    assert list(fast.columns) == ["symbol", "date", *QLIB14_COLUMNS] == list(ref.columns)
    assert (fast["symbol"].astype(str).to_numpy() == ref["symbol"].astype(str).to_numpy()).all()
    assert len(fast) == len(qlib_sample)
    for name, expr in QLIB14:
        _check(fast[name], ref[name], rtol=1e-8, atol=1e-8)


def test_qlib14_second_moments_are_exact(qlib_sample):
    """Where fast and pandas differ, the fast path is the accurate one (long-double windows)."""
    fast = qlib14(qlib_sample)
    close = fast.merge(qlib_sample[["symbol", "date", "close"]], on=["symbol", "date"])["close"]
    t = np.arange(1, 11, dtype=np.longdouble) - 5.5
    for sym in QLIB_SYMBOLS:
        idx = np.flatnonzero(fast["symbol"].to_numpy() == sym)
        c = close.to_numpy()[idx].astype(np.longdouble)
        rows = np.arange(20, len(c), 97)
        for i in rows:
            w20, w10 = c[i - 19 : i + 1], c[i - 9 : i + 1]
            std = np.sqrt(((w20 - w20.mean()) ** 2).sum() / 19) / c[i]
            d10 = w10 - w10.mean()
            slope = (t * d10).sum() / (t * t).sum()
            rsq = (t * d10).sum() ** 2 / ((t * t).sum() * (d10 * d10).sum())
            got = fast.iloc[idx[i]]
            assert got["STD20"] == pytest.approx(float(std), rel=1e-12)
            assert got["BETA10"] == pytest.approx(float(slope / c[i]), rel=1e-9, abs=1e-15)
            if not np.isnan(got["RSQR10"]):
                assert got["RSQR10"] == pytest.approx(float(rsq), rel=1e-9, abs=1e-13)
