"""No leakage, proven: data after t cannot move a prediction at t, and shuffled labels carry no skill.

* Property (hypothesis): rewriting, removing or adding stored data after t (feature partitions
  dated after t, label partitions that become known at or after t, bars after a label's
  availability) leaves the labels known by t, the model trained for t and its predictions at t
  bit for bit unchanged.
* Noise band: with labels permuted within each date, a model's daily rank IC on a test segment
  of D sessions and N symbols is a mean of D independent rank correlations of unrelated
  rankings, each with mean 0 and variance 1/(N - 1), so the mean has standard deviation
  1/sqrt((N - 1) D); the band is 4 of those (two-sided false alarm 6e-5). With the real labels
  of the planted signal (correlation 0.3 with f0) the mean rank IC lands far outside it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from alphatwin_pipelines.alpha.catalogue import load_model
from alphatwin_pipelines.alpha.dataset import read_features
from alphatwin_pipelines.alpha.labels import compute_labels
from alphatwin_pipelines.alpha.models import daily_ic
from alphatwin_pipelines.alpha.predict import predict_session
from alphatwin_pipelines.alpha.training import AlphaTrainingConfig
from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import ALPHA_LABELS, FEATURES
from tests.alpha_support import NAMES, planted_panel, train_and_store, write_panel

SETTINGS = AlphaTrainingConfig(horizons=(1,), train_sessions=50, folds=3, n_trials=2, n_estimators=10)


def _predict_at(store, session, storage_url):
    table = train_and_store(store, session, SETTINGS, storage_url)
    row = table[table["cutoff"] == session].iloc[-1]
    features = read_features(store, session, session, NAMES)
    return row["model_version"], predict_session(features, session, 1, row["model_version"], load_model(store, row), NAMES)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(after=st.lists(st.integers(0, 25), min_size=1, max_size=6, unique=True),
       how=st.sampled_from(["perturb", "drop_rows", "remove", "shuffle"]), seed=st.integers(0, 2**16))
@example(after=[0], how="perturb", seed=1)  # every kind of change at the boundary, whatever is drawn
@example(after=[0], how="drop_rows", seed=1)
@example(after=[0], how="remove", seed=1)
def test_changing_or_removing_data_after_t_leaves_predictions_at_t_unchanged(tmp_path_factory, after, how, seed):
    folder = tmp_path_factory.mktemp("leak")
    store = TableStore(folder / "data")
    features, labels = planted_panel(n_symbols=20, sessions=100, seed=3)
    write_panel(store, features, labels)
    days = pd.DatetimeIndex(sorted(features["date"].unique()))
    t = days[70]
    url = f"sqlite:///{folder / 'optuna.db'}"
    version, expected = _predict_at(store, t, url)

    rng = np.random.default_rng(seed)
    # feature partitions after t, label partitions known at or after t; always the first of each,
    # where an off-by-one would leak
    for k in sorted({0, *after}):
        for table, session in ((FEATURES, days[71 + k]), (ALPHA_LABELS, days[70 + k])):
            path = store.partition_path(table, session)
            if how == "remove":
                path.unlink(missing_ok=True)
                continue
            frame = store.read_partitions(table, session, session)
            value = "fwd_return" if table == ALPHA_LABELS else "f0"
            if how == "perturb":  # not monotone: the rank targets change too
                frame[value] = frame[value] + rng.normal(0, frame[value].std(), len(frame))
            elif how == "shuffle":
                frame[value] = rng.permutation(frame[value].to_numpy())
            else:
                frame = frame.iloc[: len(frame) // 2]
            store.write_sessions(table, frame, [session], key="available" if table == ALPHA_LABELS else "date")
    again, got = _predict_at(store, t, url)
    assert again == version
    pd.testing.assert_frame_equal(got, expected)


@settings(max_examples=20, deadline=None)
@given(cut=st.integers(25, 45), factor=st.floats(0.2, 5.0), drop=st.booleans())
def test_labels_known_by_s_do_not_depend_on_bars_after_s(cut, factor, drop):
    days = sessions_between("2024-01-02", "2024-03-28")
    rng = np.random.default_rng(0)
    bars = pd.DataFrame({"symbol": np.repeat(["A", "B", "C"], len(days)), "date": np.tile(days, 3),
                         "adj_open": np.exp(np.cumsum(rng.normal(0, 0.02, 3 * len(days))))})
    known = days[: cut + 1]
    expected = compute_labels(bars, known)
    changed = bars.copy()
    later = changed["date"] > days[cut]
    changed.loc[later, "adj_open"] *= factor
    if drop:
        changed = changed[~later | (changed["symbol"] != "B")]
    pd.testing.assert_frame_equal(compute_labels(changed, known), expected)
    assert (expected["available"] <= days[cut]).all()


def _test_segment_rank_ic(store, cutoff, test_days, url):
    table = train_and_store(store, cutoff, SETTINGS, url)
    row = table[table["cutoff"] == cutoff].iloc[-1]
    model = load_model(store, row)
    features = read_features(store, test_days[0], test_days[-1], NAMES)
    labels = store.read_partitions(ALPHA_LABELS)
    scores = pd.concat([predict_session(features, d, 1, row["model_version"], model, NAMES) for d in test_days])
    joined = scores.merge(labels[labels["horizon"] == 1], on=["date", "symbol"])
    ics = daily_ic(joined["date"].to_numpy(), joined["score"].to_numpy(), joined["fwd_return"].to_numpy())
    return float(ics["rank_ic"].mean()), len(ics)


@pytest.mark.parametrize("shuffled", [True, False], ids=["shuffled", "real"])
def test_shuffled_labels_stay_inside_the_noise_band_and_the_planted_signal_does_not(tmp_path, shuffled):
    n_symbols = 40
    features, labels = planted_panel(n_symbols=n_symbols, sessions=120, signal=0.3, seed=5)
    if shuffled:  # permute the labels among the symbols of each date
        rng = np.random.default_rng(1)
        labels["fwd_return"] = labels.groupby("date")["fwd_return"].transform(lambda r: rng.permutation(r.to_numpy()))
    store = TableStore(tmp_path / "data")
    write_panel(store, features, labels)
    days = pd.DatetimeIndex(sorted(features["date"].unique()))
    test_days = days[70:110]
    mean_ic, sessions = _test_segment_rank_ic(store, days[70], test_days, f"sqlite:///{tmp_path / 'optuna.db'}")
    band = 4 / np.sqrt((n_symbols - 1) * sessions)
    print(f"\n{'shuffled' if shuffled else 'real'} labels: test-segment mean rank IC {mean_ic:+.4f} over {sessions} "
          f"sessions x {n_symbols} symbols; noise band +/-{band:.4f} (4 / sqrt((N-1) D))")
    assert sessions == len(test_days)
    if shuffled:
        assert abs(mean_ic) < band
    else:
        assert mean_ic > 2 * band
