"""Universe scanner: planted scenarios on seeded random walks, ranking, evidence, no look-ahead."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import talib

from alphatwin_pipelines.scanner import FAMILIES, SIGNAL_COLUMNS, SIGNALS, ScanConfig, scan
from alphatwin_pipelines.scanner.scan import top_signals

#: Weekdays stand in for NYSE sessions: the scanner only needs ordered dates per symbol.
SESSIONS = pd.bdate_range("2022-01-03", periods=420).astype("datetime64[ns]")
SECTORS = ("Energy", "Health", "Tech")


def _bars(symbol: str, close: np.ndarray, volume: np.ndarray | None = None, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(close)
    spread = np.abs(rng.normal(0.004, 0.002, n))
    high, low = close * (1 + spread), close * (1 - spread)
    volume = rng.lognormal(13.0, 0.25, n).round() if volume is None else volume
    frame = pd.DataFrame({
        "symbol": symbol, "date": SESSIONS[:n], "open": close, "high": high, "low": low, "close": close,
        "volume": volume.astype(np.int64), "dividend": 0.0, "split_ratio": 1.0, "source": "test",
    })
    for col in ("open", "high", "low", "close"):
        frame[f"adj_{col}"] = frame[col]
    frame["adj_volume"] = frame["volume"].astype(np.float64)
    frame["flags"] = ""
    return frame


def _walk(seed: int, n: int = len(SESSIONS), drift: float = 0.0, vol: float = 0.015, factor=None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    returns = rng.normal(drift, vol, n)
    if factor is not None:
        returns = returns + factor
    return 50.0 * np.exp(np.cumsum(returns))


def _market(n_random: int = 24, planted: dict[str, np.ndarray] | None = None, seed: int = 7):
    """Seeded random walks in three sectors plus planted symbols (put in the first sector)."""
    factor = np.random.default_rng(seed).normal(0, 0.006, len(SESSIONS))
    frames, universe = [], []
    for i in range(n_random):
        sym = f"R{i:03d}"
        frames.append(_bars(sym, _walk(seed * 1000 + i, factor=factor), seed=seed * 1000 + i))
        universe.append((sym, SECTORS[i % len(SECTORS)], sym))
    for k, (sym, close) in enumerate((planted or {}).items()):
        frames.append(_bars(sym, close, seed=99 + k))
        universe.append((sym, SECTORS[0], sym))
    cleaned = pd.concat(frames, ignore_index=True).astype({"symbol": "string", "source": "string"})
    uni = pd.DataFrame(universe, columns=["symbol", "sector", "name"]).astype("string")
    return cleaned, uni


def _hits(result, symbol: str, signal: str) -> pd.DataFrame:
    s = result.signals
    return s[(s["symbol"] == symbol) & (s["signal"] == signal)]


@pytest.fixture(scope="module")
def market():
    return _market()


@pytest.fixture(scope="module")
def full_scan(market):
    cleaned, uni = market
    return scan(cleaned, uni, sessions=SESSIONS[-120:])


def test_golden_cross_fires_on_the_cross_session_and_not_before():
    n = len(SESSIONS)
    close = np.r_[np.linspace(150, 100, 260), np.linspace(100, 170, n - 260)]
    close = close * np.exp(np.random.default_rng(1).normal(0, 0.002, n))
    cleaned, uni = _market(6, {"GOLD": close})
    s50, s200 = pd.Series(close).rolling(50).mean(), pd.Series(close).rolling(200).mean()
    above = (s50 > s200).to_numpy()
    crosses = np.flatnonzero(above[1:] & ~above[:-1] & s200.notna().to_numpy()[:-1]) + 1
    assert crosses.size == 1, "the planted path must cross exactly once"
    cross = crosses[0]
    result = scan(cleaned, uni, sessions="all", config=ScanConfig(cross_lookback=5))
    fired = _hits(result, "GOLD", "sma_50_200_golden_cross")
    assert list(fired["date"]) == list(SESSIONS[cross : cross + 5])
    assert (fired["direction"] == 1).all() and (fired["family"] == "trend").all()
    first = json.loads(fired["evidence"].iloc[0])
    assert first["sessions_since_cross"] == 0
    assert first["sma_50"] > first["sma_200"]
    assert first["sma_50"] == pytest.approx(s50.iloc[cross], abs=1e-4)
    assert _hits(result, "GOLD", "sma_50_200_death_cross").empty


def test_rsi_crash_is_oversold_with_its_evidence():
    n = 300
    close = _walk(3, n, vol=0.01)
    close[-12:] = close[-13] * np.cumprod(np.full(12, 0.97))
    cleaned, uni = _market(6, {"CRASH": close})
    day = SESSIONS[n - 1]
    result = scan(cleaned, uni, sessions=day)
    fired = _hits(result, "CRASH", "rsi_14_oversold")
    assert len(fired) == 1 and fired["date"].iloc[0] == day and fired["direction"].iloc[0] == 1
    evidence = json.loads(fired["evidence"].iloc[0])
    expected_rsi = talib.RSI(close, 14)[-1]
    assert expected_rsi < 30
    assert evidence["rsi_14"] == pytest.approx(expected_rsi, abs=1e-4)
    assert fired["score"].iloc[0] == pytest.approx(2 + (30 - expected_rsi) / 10)
    assert _hits(result, "CRASH", "rsi_14_overbought").empty


def test_donchian_breakout_and_volume_spike():
    n = 300
    rng = np.random.default_rng(5)
    close = 100 * np.exp(rng.normal(0, 0.004, n))  # range-bound
    close[-1] = 115.0
    cleaned, uni = _market(6, {"BRK": close})
    rows = cleaned["symbol"] == "BRK"
    volume = cleaned.loc[rows, "volume"].to_numpy().copy()
    median = np.median(volume[-21:-1])
    volume[-1] = int(median * 10)
    cleaned.loc[rows, "volume"] = volume
    cleaned.loc[rows, "adj_volume"] = volume.astype(np.float64)
    prior_high = cleaned.loc[rows, "adj_high"].to_numpy()[-21:-1].max()
    day = SESSIONS[n - 1]
    result = scan(cleaned, uni, sessions=day)
    breakout = _hits(result, "BRK", "donchian_20_breakout_up")
    assert len(breakout) == 1 and breakout["family"].iloc[0] == "breakout"
    evidence = json.loads(breakout["evidence"].iloc[0])
    assert evidence["donchian_high_20"] == pytest.approx(prior_high, abs=1e-4)
    assert evidence["close"] == pytest.approx(115.0)
    spike = _hits(result, "BRK", "volume_spike_20")
    assert len(spike) == 1 and spike["direction"].iloc[0] == 1  # spike on an up day
    evidence = json.loads(spike["evidence"].iloc[0])
    assert evidence["volume_median_20"] == pytest.approx(median)
    assert evidence["volume_ratio"] == pytest.approx(10.0, rel=1e-3)
    # the day before, nothing broke out
    before = scan(cleaned, uni, sessions=SESSIONS[n - 2])
    assert _hits(before, "BRK", "donchian_20_breakout_up").empty and _hits(before, "BRK", "volume_spike_20").empty


def test_strong_trend_has_positive_12_1_momentum():
    close = _walk(11, drift=0.004, vol=0.01)
    cleaned, uni = _market(6, {"TREND": close})
    result = scan(cleaned, uni)
    fired = _hits(result, "TREND", "momentum_12_1_up")
    assert len(fired) == 1
    evidence = json.loads(fired["evidence"].iloc[0])
    assert evidence["momentum_12_1"] == pytest.approx(close[-22] / close[-253] - 1, abs=1e-4)
    assert evidence["momentum_t"] >= 1.5


def test_result_columns_ranks_and_scores(full_scan):
    signals = full_scan.signals
    assert list(signals.columns) == SIGNAL_COLUMNS
    assert len(signals) > 100
    assert set(signals["family"]) <= set(FAMILIES)
    assert set(signals["signal"]) <= set(SIGNALS)
    assert set(signals["direction"].unique()) <= {-1, 1}
    for (_, family), group in signals.groupby(["date", "family"]):
        assert sorted(group["rank_family"]) == list(range(1, len(group) + 1))
        ordered = group.sort_values("rank_family")
        assert ordered["score"].is_monotonic_decreasing
    for _, group in signals.groupby("date"):
        assert list(group["rank_overall"]) == list(range(1, len(group) + 1))  # frame is ordered
        assert group["score"].is_monotonic_decreasing
    assert (signals["score"] >= 2.0 - 1e-9).all()  # 2 at the firing threshold


def test_evidence_holds_the_values_behind_the_score(full_scan):
    for row in full_scan.signals.itertuples():
        ev = json.loads(row.evidence)
        if row.signal.startswith("rsi_14"):
            expected = 2 + (30 - ev["rsi_14"]) / 10 if row.direction > 0 else 2 + (ev["rsi_14"] - 70) / 10
        elif row.signal.startswith("zscore_20"):
            expected = abs(ev["zscore_20"])
        elif row.signal.startswith("bb_20_2"):
            expected = abs(ev["close"] - ev["bb_middle"]) / ((ev["bb_upper"] - ev["bb_middle"]) / 2)
        elif row.signal.startswith("adx_14"):
            expected = 2 + (ev["adx_14"] - 25) / 10
        elif row.signal.startswith("donchian_20_breakout_up"):
            expected = 2 + (ev["close"] - ev["donchian_high_20"]) / ev["atr_14"]
        else:
            continue
        assert row.score == pytest.approx(expected, abs=2e-3), (row.signal, row.evidence)


def test_no_look_ahead(market):
    cleaned, uni = market
    sessions = SESSIONS[-40:]
    cut = SESSIONS[-20]
    base = scan(cleaned, uni, sessions=sessions)
    changed = cleaned.copy()
    later = changed["date"] > cut
    rng = np.random.default_rng(3)
    for col in ("adj_high", "adj_low", "adj_close", "adj_volume"):
        changed.loc[later, col] = changed.loc[later, col] * rng.uniform(0.5, 1.5, later.sum())
    other = scan(changed, uni, sessions=sessions)
    for name in ("signals", "symbol_context", "sector_rotation", "top_pairs"):
        a, b = getattr(base, name), getattr(other, name)
        a, b = a[a["date"] <= cut].reset_index(drop=True), b[b["date"] <= cut].reset_index(drop=True)
        assert len(a)
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=name)
    # and a scan of just that session, on bars that end there or that go on, agrees too
    alone = scan(cleaned[cleaned["date"] <= cut], uni, sessions=cut)
    as_of = scan(cleaned, uni, sessions=cut)
    for name in ("signals", "symbol_context", "sector_rotation", "top_pairs"):
        a = getattr(base, name)
        pd.testing.assert_frame_equal(a[a["date"] == cut].reset_index(drop=True), getattr(alone, name),
                                      check_exact=True, obj=name)
        pd.testing.assert_frame_equal(getattr(as_of, name), getattr(alone, name), check_exact=True, obj=name)
    assert as_of.summary == alone.summary


def test_inputs_are_not_mutated(market):
    cleaned, uni = market
    shuffled = cleaned.sample(frac=1.0, random_state=1)  # unsorted input is sorted internally
    before, uni_before = shuffled.copy(deep=True), uni.copy(deep=True)
    result = scan(shuffled, uni, sessions=SESSIONS[-5:])
    pd.testing.assert_frame_equal(shuffled, before)
    pd.testing.assert_frame_equal(uni, uni_before)
    reference = scan(cleaned, uni, sessions=SESSIONS[-5:])
    pd.testing.assert_frame_equal(result.signals, reference.signals)


def test_shard_count_does_not_change_results(market):
    cleaned, uni = market
    one = scan(cleaned, uni, sessions=SESSIONS[-30:], n_shards=1)
    for n in (3, 7, 100):
        many = scan(cleaned, uni, sessions=SESSIONS[-30:], n_shards=n)
        for name in ("signals", "symbol_context", "sector_rotation", "top_pairs"):
            pd.testing.assert_frame_equal(getattr(one, name), getattr(many, name), check_exact=True)
        assert one.summary == many.summary


def test_top_pairs_find_planted_twins():
    base = _walk(21)
    twin = base * np.exp(np.random.default_rng(22).normal(0, 0.0005, len(base)))
    cleaned, uni = _market(30, {"TWINA": base, "TWINB": twin})
    result = scan(cleaned, uni, sessions=SESSIONS[-3:])
    for _, day in result.top_pairs.groupby("date"):
        best = day.sort_values("pair_rank").iloc[0]
        assert (best["symbol_a"], best["symbol_b"]) == ("TWINA", "TWINB")
        assert best["corr_60"] > 0.99 and bool(best["same_sector"])
        assert day["corr_60"].is_monotonic_decreasing
        assert len(day) == ScanConfig().top_k_pairs


def test_cross_asset_context_matches_direct_computation(full_scan, market):
    cleaned, uni = market
    returns = cleaned.pivot(index="date", columns="symbol", values="adj_close").pct_change()
    day = SESSIONS[-1]
    window = returns.loc[:day].iloc[-60:]
    sector_of = uni.set_index("symbol")["sector"]
    row = full_scan.symbol_context.set_index(["date", "symbol"]).loc[(day, "R004")]
    peers = [s for s in window.columns if sector_of[s] == sector_of["R004"] and s != "R004"]
    assert row["corr_sector_60"] == pytest.approx(np.corrcoef(window["R004"], window[peers].mean(axis=1))[0, 1])
    market_ret = window.mean(axis=1)
    assert row["corr_market_60"] == pytest.approx(np.corrcoef(window["R004"], market_ret)[0, 1])
    assert row["beta_market_60"] == pytest.approx(np.cov(window["R004"], market_ret)[0, 1] / market_ret.var())
    growth = (1 + returns.loc[:day].iloc[-63:]).prod()
    assert row["return_63"] == pytest.approx(growth["R004"] - 1)
    rotation = full_scan.sector_rotation[full_scan.sector_rotation["date"] == day]
    assert sorted(rotation["rank"].tolist()) == [1, 2, 3]
    sector_growth = {s: (1 + returns.loc[:day].iloc[-63:][[c for c in returns if sector_of[c] == s]].mean(axis=1)).prod()
                     for s in SECTORS}
    best = max(sector_growth, key=sector_growth.get)
    assert rotation.set_index("sector").loc[best, "rank"] == 1


def test_sector_with_planted_rally_leads_rotation():
    frames = {f"UP{i}": _walk(40 + i, drift=0.003) for i in range(4)}
    cleaned, uni = _market(12, frames)  # planted symbols sit in the first sector
    result = scan(cleaned, uni)
    rotation = result.sector_rotation
    assert rotation.iloc[0]["sector"] == SECTORS[0] and rotation.iloc[0]["rank"] == 1
    assert rotation.iloc[0]["rel_strength_63"] > 0


def test_summary_and_top(full_scan, market):
    summary = full_scan.summary
    assert summary["symbols_scanned"] == market[1]["symbol"].nunique()
    assert summary["sessions"] == 120
    assert sum(summary["hits_per_family"].values()) == summary["hits"] == len(full_scan.signals)
    signals = full_scan.signals
    assert summary["hits_per_family"] == {f: int((signals["family"] == f).sum()) for f in FAMILIES}
    assert summary["hits_per_signal"] == signals["signal"].value_counts().sort_index().to_dict()
    top = full_scan.top()
    assert len(top) == 20 and (top["date"] == SESSIONS[-1]).all()
    assert [d["symbol"] for d in summary["top_20"]] == top["symbol"].tolist()
    json.dumps(summary)  # plain JSON-able metadata


def test_summary_counts_only_symbols_with_a_bar_on_a_scanned_session(market):
    cleaned, uni = market
    gone = uni["symbol"].iloc[:3].tolist()  # no bar on the last two sessions
    bars = cleaned[~(cleaned["symbol"].isin(gone) & (cleaned["date"] >= SESSIONS[-2]))]
    for n_shards in (1, 4):
        result = scan(bars, uni, sessions=SESSIONS[-2:], n_shards=n_shards)
        assert result.summary["symbols_scanned"] == uni["symbol"].nunique() - 3
        assert not set(gone) & set(result.signals["symbol"])
        assert result.summary["hits_per_signal"] == result.signals["signal"].value_counts().sort_index().to_dict()
    assert scan(bars, uni, sessions=SESSIONS[-3:]).summary["symbols_scanned"] == uni["symbol"].nunique()


@pytest.mark.parametrize("day", [None, -60, -120, 0])
def test_top_is_the_n_lowest_overall_ranks_of_the_session(full_scan, day):
    """Against pandas' own filter + nsmallest, on the scan's frame (one slice per session)
    and on shuffled rows (the general path)."""
    date = None if day is None else SESSIONS[day]  # SESSIONS[0] was not scanned: no rows
    for signals in (full_scan.signals, full_scan.signals.sample(frac=1.0, random_state=7)):
        wanted = signals["date"].max() if date is None else date
        expected = signals[signals["date"] == wanted].nsmallest(20, "rank_overall").reset_index(drop=True)
        assert len(expected) == (0 if day == 0 else 20)
        pd.testing.assert_frame_equal(top_signals(signals, 20, date), expected)


def test_universe_filters_and_bad_input(market):
    cleaned, uni = market
    tech = uni[uni["sector"] == "Tech"]
    result = scan(cleaned, tech)
    assert set(result.signals["symbol"]) <= set(tech["symbol"])
    assert set(result.symbol_context["sector"]) == {"Tech"}
    assert result.summary["symbols_scanned"] == tech["symbol"].nunique() < uni["symbol"].nunique()
    with pytest.raises(ValueError, match="adj_close"):
        scan(cleaned.drop(columns=["adj_close"]), uni)
    empty = scan(cleaned, uni, sessions="1990-01-02")
    assert empty.signals.empty and list(empty.signals.columns) == SIGNAL_COLUMNS
