"""The factor report's numbers: a hand computation on a tiny frame, alphalens on a larger one,
point in time (labels not yet available at as_of change nothing), and bad input named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphatwin_pipelines.alpha.factor_report import (
    FactorReportSettings, assign_quantiles, factor_report, group_ranks,
)


def make_frames(days: int = 40, names: int = 30, horizons=(1, 5), signal: float = 0.3, seed: int = 0):
    """Predictions and labels on business days; each label is available h business days later."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2021-01-04", periods=days)
    keys = pd.MultiIndex.from_product([dates, [f"S{i:02d}" for i in range(names)]],
                                      names=["date", "symbol"]).to_frame(index=False)
    predictions, labels = [], []
    for h in horizons:
        score = rng.normal(size=len(keys))
        predictions.append(keys.assign(horizon=h, score=score))
        labels.append(keys.assign(horizon=h, fwd_return=0.01 * (signal * score + rng.normal(size=len(keys))),
                                  available=keys["date"] + pd.offsets.BDay(h)))
    return pd.concat(predictions, ignore_index=True), pd.concat(labels, ignore_index=True)


def test_hand_computation_on_a_tiny_frame():
    dates = pd.to_datetime(["2021-01-04", "2021-01-05"])
    symbols = ["A", "B", "C", "D", "E"]
    score = [[1.0, 2.0, 3.0, 4.0, 5.0], [5.0, 4.0, 3.0, 2.0, 1.0]]
    ret = [[0.01, 0.03, 0.02, 0.05, 0.04], [0.01, 0.02, 0.03, 0.04, 0.05]]
    rows = [(d, s, score[i][j], ret[i][j]) for i, d in enumerate(dates) for j, s in enumerate(symbols)]
    frame = pd.DataFrame(rows, columns=["date", "symbol", "score", "fwd_return"]).assign(horizon=1)
    labels = frame.drop(columns="score").assign(available=frame["date"])
    report = factor_report(frame.drop(columns="fwd_return"), labels, pd.DataFrame({"symbol": symbols, "sector": "X"}),
                           FactorReportSettings(quantiles=5, min_names=5))
    day1 = report.daily.iloc[0]
    x, y = np.array(score[0]), np.array(ret[0])
    pearson = ((x - x.mean()) * (y - y.mean())).sum() / np.sqrt(((x - x.mean()) ** 2).sum() * ((y - y.mean()) ** 2).sum())
    # ranks of y: 1, 3, 2, 5, 4 -> d = 0, -1, 1, -1, 1; Spearman = 1 - 6*4 / (5*24) = 0.8
    assert day1["ic"] == pytest.approx(pearson)
    assert day1["rank_ic"] == pytest.approx(0.8)
    day2 = report.daily.iloc[1]
    assert day2["ic"] == pytest.approx(-1.0) and day2["rank_ic"] == pytest.approx(-1.0)
    summary = report.summary.iloc[0]
    assert summary["mean_rank_ic"] == pytest.approx(-0.1)
    assert summary["rank_icir"] == pytest.approx(-0.1 / np.std([0.8, -1.0], ddof=1))
    # five names, five quantiles: one name each; spread = top name's return - bottom name's
    assert day1["spread"] == pytest.approx(0.04 - 0.01) and day2["spread"] == pytest.approx(0.01 - 0.05)
    q = report.quantile_returns.set_index("quantile")["mean_return"]
    assert q[3] == pytest.approx((0.02 + 0.03) / 2)
    # top quantile: E on day 1, A on day 2: a full change
    assert np.isnan(day1["top_turnover"]) and day2["top_turnover"] == pytest.approx(1.0)
    assert report.by_sector.iloc[0]["mean_rank_ic"] == pytest.approx(-0.1)
    table = report.to_table()
    assert set(table["section"]) == {"daily", "summary", "quantile", "decay", "year", "sector"}


def test_ranks_and_quantiles_match_pandas():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"date": np.repeat([1, 2, 3], 7), "score": rng.integers(0, 4, 21).astype(float)})
    codes = frame["date"].to_numpy() - 1
    expected = frame.groupby("date")["score"].rank(method="average").to_numpy()
    assert np.array_equal(group_ranks(codes, frame["score"].to_numpy()), expected)
    distinct = frame.assign(score=rng.normal(size=21))
    quantiles = assign_quantiles(distinct, ["date"], 5)
    by_qcut = distinct.groupby("date")["score"].transform(lambda s: pd.qcut(s, 5, labels=False) + 1)
    assert (quantiles.to_numpy() == by_qcut.to_numpy()).all()


def test_agrees_with_alphalens():
    al = pytest.importorskip("alphalens")
    predictions, labels = make_frames(days=30, names=40, horizons=(1,))
    report = factor_report(predictions, labels, None, FactorReportSettings(quantiles=5, min_names=5,
                                                                           as_of="2021-03-31"))
    factor_data = (predictions.merge(labels, on=["date", "symbol", "horizon"]).rename(columns={"symbol": "asset"})
                   .set_index(["date", "asset"]))
    factor_data = factor_data.rename(columns={"score": "factor", "fwd_return": "1D"})[["1D", "factor"]]
    factor_data["factor_quantile"] = factor_data.groupby(level="date")["factor"].transform(
        lambda s: pd.qcut(s, 5, labels=False) + 1)
    ic = al.performance.factor_information_coefficient(factor_data)["1D"]
    assert np.allclose(report.daily["rank_ic"].to_numpy(), ic.to_numpy())
    means = al.performance.mean_return_by_quantile(factor_data, demeaned=False)[0]["1D"]
    assert np.allclose(report.quantile_returns["mean_return"].to_numpy(), means.to_numpy())
    top = al.performance.quantile_turnover(factor_data["factor_quantile"], 5, period=1)
    assert np.allclose(report.daily["top_turnover"].to_numpy()[1:], top.to_numpy()[1:])


def test_planted_signal_is_found_and_noise_is_not():
    predictions, labels = make_frames(days=60, names=50, horizons=(1,), signal=0.5)
    strong = factor_report(predictions, labels).summary.iloc[0]
    noise = factor_report(predictions, labels.assign(fwd_return=np.random.default_rng(9).permutation(
        labels["fwd_return"].to_numpy()))).summary.iloc[0]
    assert strong["mean_rank_ic"] > 0.3 and strong["mean_spread"] > 0
    # 59 days of 50 names: the mean of pure-noise rank ICs has std ~ 1/sqrt(49 * 59) ~ 0.019
    assert abs(noise["mean_rank_ic"]) < 4 * 0.019


def test_decay_sectors_and_years():
    predictions, labels = make_frames(days=200, names=40, horizons=(1, 5))
    sectors = pd.DataFrame({"symbol": [f"S{i:02d}" for i in range(40)], "sector": ["Tech", "Energy"] * 20})
    report = factor_report(predictions, labels, sectors, FactorReportSettings(min_names=10))
    decay = report.decay.set_index(["horizon", "label_horizon"])["mean_rank_ic"]
    # each horizon's score carries its own label's signal only
    assert decay[(1, 1)] > 0.2 and abs(decay[(1, 5)]) < 0.05 and decay[(5, 5)] > 0.2
    assert set(report.by_sector["sector"]) == {"Tech", "Energy"}
    assert set(report.by_year["year"]) == {2021}


@settings(max_examples=8, deadline=None)
@given(cut=st.integers(min_value=12, max_value=27), seed=st.integers(0, 2**16))
def test_labels_after_as_of_change_nothing(cut, seed):
    predictions, labels = make_frames(days=30, names=12, horizons=(1, 5), seed=seed % 7)
    as_of = pd.bdate_range("2021-01-04", periods=30)[cut]
    config = FactorReportSettings(min_names=5, as_of=f"{as_of:%Y-%m-%d}")
    before = factor_report(predictions, labels, None, config).to_table()
    later = labels["available"] > as_of
    changed = labels.assign(fwd_return=labels["fwd_return"].where(~later, np.random.default_rng(seed).normal(
        size=len(labels))))
    pd.testing.assert_frame_equal(before, factor_report(predictions, changed, None, config).to_table())
    pd.testing.assert_frame_equal(before, factor_report(predictions, labels[~later], None, config).to_table())
    daily = before[before["section"] == "daily"]
    assert pd.to_datetime(daily["group"]).max() < as_of  # the as-of day's 1-session label is not known yet


def test_bad_input_is_named():
    predictions, labels = make_frames(days=10, names=12, horizons=(1,))
    with pytest.raises(ValueError, match="alpha_labels lacks column.*available"):
        factor_report(predictions, labels.drop(columns="available"))
    with pytest.raises(ValueError, match="alpha_predictions has .* rows sharing"):
        factor_report(pd.concat([predictions, predictions.head(1)]), labels)
    with pytest.raises(ValueError, match="scored as of 2021-01-04: alpha_labels has no label"):
        factor_report(predictions, labels, None, FactorReportSettings(as_of="2021-01-04"))
    # labels exist, but none yet for the only session predicted: a clear error, not a failed plot
    last = predictions["date"].max()
    with pytest.raises(ValueError, match=f"scored as of {last:%Y-%m-%d}.*Materialise alpha_predictions"):
        factor_report(predictions[predictions["date"] == last], labels)
    report = factor_report(predictions[predictions["date"] >= last - pd.offsets.BDay(2)], labels)
    assert list(report.summary["horizon"]) == [1] and report.notes == []
