"""The synthetic market: deterministic, range-independent, and realistic enough to matter.

Tests are ordered so that fetches ending on the same session reuse the in-process panel
cache (two entries): most end on 2024-12-31, the range checks on 2025-12-31.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from alphatwin_pipelines.calendar import all_sessions, sessions_between
from alphatwin_pipelines.schema import BAR_COLUMNS, empty_bars, to_canonical
from alphatwin_pipelines.sources import make_source
from alphatwin_pipelines.sources.base import RULE_NO_DATA
from alphatwin_pipelines.sources import synthetic
from alphatwin_pipelines.sources.synthetic import SyntheticSource

GICS_SECTORS = {
    "Communication Services", "Consumer Discretionary", "Consumer Staples", "Energy", "Financials",
    "Health Care", "Industrials", "Information Technology", "Materials", "Real Estate", "Utilities",
}


def autocorr(wide: pd.DataFrame, lag: int) -> np.ndarray:
    """Per-column lag autocorrelation (vectorised; ``Series.autocorr`` per column is slow)."""
    values = wide.to_numpy(dtype=float)
    head, tail = values[:-lag], values[lag:]
    head, tail = head - head.mean(axis=0), tail - tail.mean(axis=0)
    return (head * tail).sum(axis=0) / np.sqrt((head**2).sum(axis=0) * (tail**2).sum(axis=0))


@pytest.fixture(scope="module")
def source() -> SyntheticSource:
    """The clean market (no injected defects: test_synthetic_defects covers those)."""
    return SyntheticSource(defects=0)


@pytest.fixture(scope="module")
def symbols(source) -> list[str]:
    return source.universe()["symbol"].tolist()


@pytest.fixture(scope="module")
def five_years(source, symbols) -> pd.DataFrame:
    """Every symbol over 2020-2024, with split- and dividend-aware daily log returns."""
    bars = source.fetch(symbols, sessions_between("2020-01-02", "2024-12-31")).bars
    prev_close = bars.groupby("symbol")["close"].shift()
    return bars.assign(
        prev_close=prev_close,
        ret=np.log((bars["close"] + bars["dividend"]) * bars["split_ratio"] / prev_close),
    )


@pytest.fixture(scope="module")
def returns(five_years) -> pd.DataFrame:
    """Date x symbol returns of the symbols listed the whole five years."""
    wide = five_years.pivot(index="date", columns="symbol", values="ret").iloc[1:]
    return wide.dropna(axis=1)


def test_universe_is_gics_sectors_with_realistic_unique_tickers(source):
    universe = source.universe()
    assert list(universe.columns) == ["symbol", "sector", "name"]
    assert all(str(universe[c].dtype) == "string" for c in universe.columns)
    assert len(universe) == 1000 and universe["symbol"].is_unique
    assert universe["symbol"].tolist() == sorted(universe["symbol"])
    assert all(re.fullmatch(r"[A-Z]{2,4}", s) for s in universe["symbol"])
    assert set(universe["sector"]) == GICS_SECTORS
    assert universe["sector"].value_counts().min() >= 20
    assert universe["name"].str.len().min() > 5


def test_universe_prefix_is_stable_across_sizes_and_depends_on_seed(source):
    big = source.universe().set_index("symbol")
    small = SyntheticSource(n_symbols=50, defects=0).universe().set_index("symbol")
    assert len(small) == 50
    pdt.assert_frame_equal(small, big.loc[small.index])
    other = SyntheticSource(seed=8).universe()
    assert set(other["symbol"]) != set(big.index)


def test_make_source_builds_the_synthetic_source():
    built = make_source("synthetic", seed=3, n_symbols=20, defects=0.001)
    assert isinstance(built, SyntheticSource) and built.name == "synthetic"
    assert (built.seed, built.n_symbols, built.defects) == (3, 20, 0.001)


def test_bars_are_canonical(source, five_years):
    bars = five_years[list(BAR_COLUMNS)]
    assert list(bars.columns) == list(BAR_COLUMNS)
    assert bars.dtypes.to_dict() == empty_bars().dtypes.to_dict()
    pdt.assert_frame_equal(to_canonical(bars), bars)
    assert (bars["source"] == "synthetic").all()
    assert not bars.isna().any().any()
    assert not bars.duplicated(["symbol", "date"]).any()


def test_ohlc_volume_and_actions_are_consistent(five_years):
    bars = five_years
    body_low = bars[["open", "close"]].min(axis=1)
    body_high = bars[["open", "close"]].max(axis=1)
    assert (bars["low"] > 0).all()
    assert (bars["low"] <= body_low).all() and (body_high <= bars["high"]).all()
    assert (bars["high"] > bars["low"]).mean() > 0.95
    assert (bars["volume"] > 0).all() and bars["volume"].dtype == np.int64
    assert ((bars["dividend"] >= 0) & (bars["dividend"] < bars["close"])).all()
    assert (bars["split_ratio"] > 0).all()
    # Opens gap away from the previous close instead of copying it.
    plain = bars[(bars["split_ratio"] == 1) & (bars["dividend"] == 0)].dropna(subset=["prev_close"])
    gap = np.log(plain["open"] / plain["prev_close"]).abs()
    assert (gap > 0.001).mean() > 0.6 and gap.median() < 0.02


def test_returns_have_realistic_volatility_and_heavy_tails(returns):
    assert returns.shape[1] > 800
    vol = returns.std()
    assert 0.01 < vol.median() < 0.03
    kurtosis = returns.kurt()
    assert kurtosis.median() > 1.5, kurtosis.describe()
    assert (kurtosis > 0.5).mean() > 0.9


def test_volatility_clusters(returns):
    absolute = returns.abs()
    by_lag = [np.median(autocorr(absolute, lag)) for lag in range(1, 6)]
    assert min(by_lag) > 0.03, by_lag
    assert np.mean(by_lag) > 0.04
    raw = [np.median(autocorr(returns, lag)) for lag in (1, 2)]
    assert max(abs(r) for r in raw) < 0.05  # clustering without predictable returns


def test_stocks_in_a_sector_move_together_more_than_across_sectors(source, returns):
    sector = source.universe().set_index("symbol")["sector"].reindex(returns.columns).to_numpy(dtype=object)
    corr = np.corrcoef(returns.to_numpy(), rowvar=False)
    np.fill_diagonal(corr, np.nan)
    same = sector[:, None] == sector[None, :]
    within, across = np.nanmean(corr[same]), np.nanmean(corr[~same])
    assert across > 0.1, across  # a market factor
    assert within - across > 0.05, (within, across)


def test_prices_and_volume_look_like_a_stock_market(five_years, returns):
    closes = five_years["close"]
    assert closes.between(5, 500).mean() > 0.85
    log_volume = np.log(five_years.pivot(index="date", columns="symbol", values="volume")[returns.columns])
    assert np.median(autocorr(log_volume, 1)) > 0.3
    busy = [np.corrcoef(returns[s].abs(), log_volume[s].iloc[1:])[0, 1] for s in returns.columns[:200]]
    assert np.median(busy) > 0.2


def test_splits_drop_the_raw_price_by_their_ratio(five_years):
    splits = five_years[five_years["split_ratio"] != 1.0]
    assert len(splits) >= 24
    assert (splits["split_ratio"] > 1).sum() >= 12 and (splits["split_ratio"] == 0.1).sum() >= 3
    assert set(splits["split_ratio"]) <= {1.5, 2.0, 3.0, 4.0, 0.1}
    expected_open = splits["prev_close"] / splits["split_ratio"]
    assert np.abs(np.log(splits["open"] / expected_open)).max() < 0.25
    forward = splits[splits["split_ratio"] >= 2]
    assert np.log(forward["prev_close"] / forward["close"]).median() > 0.5  # raw, unadjusted prices
    assert np.abs(splits["ret"]).median() < 0.05


def test_quarterly_dividends_for_about_half_the_symbols(five_years):
    paid = five_years[five_years["dividend"] > 0]
    assert len(paid) >= 2000
    payers = paid["symbol"].nunique() / five_years["symbol"].nunique()
    assert 0.3 < payers < 0.7
    spacing = paid.groupby("symbol")["date"].diff().dt.days.dropna()
    assert spacing.between(80, 100).mean() > 0.9
    yield_ = paid["dividend"] / paid["prev_close"]
    assert yield_.median() < 0.02
    # The open falls by about the dividend on its ex-date.
    plain = five_years[(five_years["split_ratio"] == 1.0)].dropna(subset=["prev_close"])
    gap = np.log(plain["open"] / plain["prev_close"])
    ex_date = plain["dividend"] > 0
    drop = gap[ex_date].mean() - gap[~ex_date].mean()
    expected = np.log1p(-(plain.loc[ex_date, "dividend"] / plain.loc[ex_date, "prev_close"])).mean()
    assert drop == pytest.approx(expected, rel=0.3)


def test_rows_only_on_sessions_and_every_session_while_listed(source, symbols):
    calendar_days = pd.date_range("2024-06-01", "2024-07-31").union(pd.date_range("2024-12-01", "2024-12-31"))
    bars = source.fetch(symbols[:30], calendar_days).bars
    sessions = calendar_days[calendar_days.isin(all_sessions())]
    assert len(sessions) == 41 + 21
    assert set(bars["date"]) == set(sessions)
    for holiday in ("2024-06-19", "2024-07-04", "2024-12-25"):
        assert pd.Timestamp(holiday) not in set(bars["date"])
    assert (bars["date"].dt.day_of_week < 5).all()
    per_symbol = bars.groupby("symbol")["date"].count()
    assert (per_symbol == len(sessions)).sum() >= 25


def test_symbols_outside_the_universe_are_generated_from_their_name(source, symbols):
    window = sessions_between("2024-12-02", "2024-12-31")
    made_up = [f"Q{a}{b}" for a in "ABCDEFGH" for b in "JKLMN"]  # 40 tickers the market does not list
    assert not set(made_up) & set(symbols)
    listed = next(s for s in symbols if len(source.fetch([s], window).bars))  # some of the universe has delisted
    result = source.fetch(["not a ticker", listed.lower(), *made_up], window)
    assert [r.symbol for r in result.rejections] == ["NOT A TICKER"]
    rejection = result.rejections[0]
    assert rejection.rule == RULE_NO_DATA == "no_data" and rejection.source == "synthetic"
    assert "'NOT A TICKER' is not a ticker" in rejection.reason
    bars = result.bars
    assert len(set(bars["symbol"]) & set(made_up)) >= 30  # a few list later or were delisted, like anywhere
    assert (bars.groupby("symbol").size() <= len(window)).all() and listed in set(bars["symbol"])
    # The same bars whatever else is asked for, in one request or alone, and like a listed symbol's.
    alone = source.fetch([made_up[3]], window).bars
    pdt.assert_frame_equal(alone, bars[bars["symbol"] == made_up[3]].reset_index(drop=True))
    ohlc_ok = (bars["low"] <= bars[["open", "close"]].min(axis=1)) & (bars[["open", "close"]].max(axis=1) <= bars["high"])
    assert ohlc_ok.all() and (bars["volume"] > 0).all()
    generated = bars[bars["symbol"].isin(made_up)]
    assert generated["close"].nunique() > 30  # companies of their own, not copies of one path
    nothing = source.fetch(["NOT A TICKER"], window)
    assert nothing.bars.empty and nothing.bars.dtypes.to_dict() == empty_bars().dtypes.to_dict()
    assert nothing.failed_symbols() == {"NOT A TICKER"}


def test_no_sessions_gives_empty_bars(source, symbols):
    weekend = pd.DatetimeIndex(["2024-07-06", "2024-07-07", "1985-01-02"])
    result = source.fetch(symbols[:5], weekend)
    assert result.bars.empty and list(result.bars.columns) == list(BAR_COLUMNS)


def test_fetch_does_not_mutate_its_inputs(source, symbols):
    wanted = symbols[:10] + ["ZZZZ"]
    sessions = sessions_between("2024-12-02", "2024-12-31")
    wanted_copy, sessions_copy = list(wanted), sessions.copy()
    source.fetch(wanted, sessions)
    assert wanted == wanted_copy
    pdt.assert_index_equal(sessions, sessions_copy)
    assert all_sessions().is_monotonic_increasing


def test_same_seed_gives_identical_bars_in_a_fresh_computation():
    sessions = sessions_between("2023-01-03", "2023-03-31")
    first = SyntheticSource(seed=11, n_symbols=40)  # defects included: they are deterministic too
    before = first.fetch(first.universe()["symbol"].tolist(), sessions).bars
    synthetic._panel.cache_clear()
    second = SyntheticSource(seed=11, n_symbols=40)
    after = second.fetch(second.universe()["symbol"].tolist(), sessions).bars
    assert len(before) > 0
    pdt.assert_frame_equal(before, after)
    different = SyntheticSource(seed=12, n_symbols=40)
    other = different.fetch(different.universe()["symbol"].tolist(), sessions).bars
    assert not np.allclose(other["close"].to_numpy()[:100], before["close"].to_numpy()[:100])


def test_a_session_has_the_same_bars_however_it_is_requested(source, symbols, five_years):
    day = pd.Timestamp("2024-06-14")
    small = SyntheticSource(n_symbols=50, defects=0)
    small_symbols = small.universe()["symbol"].tolist()
    subset = small_symbols[::3]
    single = source.fetch(subset, pd.DatetimeIndex([day])).bars
    other_subset = source.fetch(small_symbols[::-1] + symbols[-5:], pd.DatetimeIndex([day])).bars
    from_small = small.fetch(subset, sessions_between("2024-06-03", "2024-06-28")).bars
    wide = source.fetch(subset, sessions_between("2024-01-02", "2025-12-31")).bars

    expected = wide[wide["date"] == day].reset_index(drop=True)
    assert len(expected) >= len(subset) - 2  # a few may be unlisted
    pdt.assert_frame_equal(single, expected)
    pdt.assert_frame_equal(other_subset[other_subset["symbol"].isin(subset)].reset_index(drop=True), expected)
    pdt.assert_frame_equal(from_small[from_small["date"] == day].reset_index(drop=True), expected)
    ours = five_years.loc[five_years["symbol"].isin(subset), list(BAR_COLUMNS)]
    pdt.assert_frame_equal(ours[ours["date"] == day].reset_index(drop=True), expected)
    # And a whole overlapping window, not just one day.
    overlap = wide[wide["date"] <= "2024-12-31"].reset_index(drop=True)
    pdt.assert_frame_equal(ours[ours["date"] >= "2024-01-02"].reset_index(drop=True), overlap)


def test_late_listings_and_delistings(source, symbols):
    history = sessions_between("2000-01-03", "2025-12-31")
    monthly = history[::21]
    bars = source.fetch(symbols, monthly).bars
    first, last = bars.groupby("symbol")["date"].min(), bars.groupby("symbol")["date"].max()
    late, gone = first[first > monthly[12]], last[last < monthly[-12]]
    assert 0.08 < len(late) / len(symbols) < 0.18
    assert 0.02 < len(gone) / len(symbols) < 0.07
    assert late.min() >= pd.Timestamp("2001-01-01") and gone.min() >= pd.Timestamp("2005-01-01")

    newcomer, leaver = late.index[0], gone.index[0]
    daily = source.fetch([newcomer, leaver], history).bars
    for symbol in (newcomer, leaver):
        dates = daily.loc[daily["symbol"] == symbol, "date"]
        assert dates.tolist() == history[(history >= dates.min()) & (history <= dates.max())].tolist()
    listed_from = daily.loc[daily["symbol"] == newcomer, "date"].min()
    assert monthly[monthly < late[newcomer]][-1] < listed_from <= late[newcomer]
    delisted_after = daily.loc[daily["symbol"] == leaver, "date"].max()
    assert gone[leaver] <= delisted_after < monthly[monthly > gone[leaver]][0]
    after = source.fetch([leaver], sessions_between("2025-12-01", "2025-12-31"))
    assert after.bars.empty and after.rejections == []
