"""Alpha engine pieces: labels, purged K-fold, the model current at a session, and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines.alpha.catalogue import AlphaModelError, current_models, leakage_violations, load_model, read_models
from alphatwin_pipelines.alpha.cv import purged_kfold
from alphatwin_pipelines.alpha.dataset import AlphaInputError
from alphatwin_pipelines.alpha.labels import compute_labels
from alphatwin_pipelines.alpha.predict import predict_session, read_score_matrix, score_matrix
from alphatwin_pipelines.alpha.training import AlphaTrainingConfig, replay_model
from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.stages.alpha_predictions import predict_sessions
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import ALPHA_LABELS, ALPHA_PREDICTIONS, FEATURES
from tests.alpha_support import NAMES, planted_panel, train_and_store, write_panel

SMALL = AlphaTrainingConfig(horizons=(1,), train_sessions=60, folds=3, n_trials=2, n_estimators=10)


def test_labels_enter_at_the_next_open_and_exit_h_opens_later():
    days = sessions_between("2024-03-01", "2024-03-15")
    opens = np.arange(len(days), dtype=float) + 10.0  # open on day k: 10 + k
    bars = pd.DataFrame({"symbol": "AAA", "date": days, "adj_open": opens})
    bars = bars.drop(index=6)  # no bar on day 6: labels entering or exiting there are absent
    labels = compute_labels(bars, days, horizons=(1, 5))
    for _, row in labels.iterrows():
        t = days.get_loc(row["date"])
        h = row["horizon"]
        assert row["available"] == days[t + 1 + h]
        assert row["fwd_return"] == pytest.approx((10 + t + 1 + h) / (10 + t + 1) - 1)
        assert 6 not in (t + 1, t + 1 + h)
    # every (t, h) with both opens present is there
    expected = sum(1 for h in (1, 5) for t in range(len(days) - 1 - h) if 6 not in (t + 1, t + 1 + h))
    assert len(labels) == expected


def test_purged_kfold_leaves_no_training_label_overlapping_a_test_block_and_embargoes_after_it():
    dates = np.repeat(np.arange(100), 3)
    horizon = 5
    available = dates + 1 + horizon
    for train, test in purged_kfold(dates, available, folds=4, embargo=3):
        lo, hi, span_end = dates[test].min(), dates[test].max(), available[test].max()
        assert not ((dates[train] <= span_end) & (available[train] >= lo)).any()  # purged
        assert not ((dates[train] > hi) & (dates[train] <= span_end + 3)).any()  # embargoed
        # the purge reaches at least the horizon back from the test block
        earlier = dates[train][dates[train] < lo]
        assert earlier.size == 0 or earlier.max() <= lo - 1 - horizon
        assert len(np.intersect1d(train, test)) == 0
    with pytest.raises(ValueError, match="widen the training window"):
        next(purged_kfold(np.arange(2), np.arange(2) + 2, folds=3, embargo=0))


def test_the_model_current_at_a_session_is_the_latest_with_cutoff_at_or_before_it():
    models = pd.DataFrame({"model_version": ["a", "b", "c"], "horizon": [1, 1, 5],
                           "cutoff": pd.to_datetime(["2024-01-05", "2024-02-01", "2024-01-10"]),
                           "labels_known_through": pd.to_datetime(["2024-01-04", "2024-01-31", "2024-01-09"])})
    assert current_models(models, "2024-01-04").empty
    assert current_models(models, "2024-01-05")["model_version"].tolist() == ["a"]
    assert current_models(models, "2024-01-31")["model_version"].tolist() == ["a", "c"]
    assert current_models(models, "2024-02-01")["model_version"].tolist() == ["b", "c"]
    predictions = pd.DataFrame({"date": pd.to_datetime(["2024-01-05", "2024-01-31", "2024-01-05", "2024-01-31"]),
                                "symbol": "X", "horizon": [1, 1, 5, 5], "model_version": ["a", "b", "c", "zz"]})
    bad = leakage_violations(predictions, models)
    assert bad["model_version"].tolist() == ["b", "c", "zz"]  # b serves before its cutoff, c too, zz is unknown


@pytest.fixture
def trained(data_dir, tmp_path):
    store = TableStore(data_dir)
    features, labels = planted_panel(n_symbols=30, sessions=110)
    write_panel(store, features, labels)
    days = pd.DatetimeIndex(sorted(features["date"].unique()))
    table = train_and_store(store, days[80], SMALL, f"sqlite:///{tmp_path / 'optuna.db'}")
    return store, features, days, table


def test_predictions_rank_every_symbol_and_explain_the_top_three_contributions(trained):
    store, features, days, table = trained
    report = predict_sessions(store, days[78:84])
    assert report.without_model == list(days[78:80])  # before the first cutoff: no model, empty partitions
    stored = store.read_partitions(ALPHA_PREDICTIONS)
    assert sorted(stored["date"].unique()) == list(days[80:84])
    assert (stored.groupby("date")["rank"].apply(sorted) == [list(range(1, 31))] * 4).all()
    row = stored.iloc[0]
    assert row["feature_1"] == "f0"  # the planted signal drives most scores
    assert abs(row["shap_1"]) >= abs(row["shap_2"]) >= abs(row["shap_3"])
    assert row["explanation"].startswith(f"f0 ")
    assert leakage_violations(stored, read_models(store)).empty
    matrix = score_matrix(stored, 1)
    assert matrix.shape == (4, 30) and matrix.index.is_monotonic_increasing
    assert read_score_matrix(store, 1, days[81], days[82]).equals(matrix.loc[days[81]:days[82]])


def test_a_model_replays_from_its_reproducibility_record_alone(trained):
    store, features, days, table = trained
    row = table.iloc[0]
    replayed, data = replay_model(row["record_json"], store.data_dir)
    stored = load_model(store, row)
    X = features[features["date"] == days[85]][NAMES].to_numpy()
    assert np.array_equal(replayed.predict(X), stored.predict(X))
    assert data.labels_known_through == row["labels_known_through"] < row["cutoff"]
    # a changed input partition inside the window is named as the reason a replay cannot match
    frame = store.read_partitions(ALPHA_LABELS, days[60], days[60])
    frame["fwd_return"] = frame["fwd_return"][::-1].to_numpy()
    store.write_sessions(ALPHA_LABELS, frame, days[60:61], key="available")
    with pytest.raises(AlphaInputError, match=f"cannot replay model version {row['model_version']}"):
        replay_model(row["record_json"], store.data_dir)


def test_a_missing_feature_column_or_an_unloadable_model_fails_and_keeps_every_stored_prediction(trained):
    store, features, days, table = trained
    predict_sessions(store, days[80:83])
    before = {s: store.partition_path(ALPHA_PREDICTIONS, s).read_bytes() for s in days[80:83]}
    version = table["model_version"].iloc[0]

    with pytest.raises(AlphaInputError, match=rf"partition {days[81]:%Y-%m-%d} has no column 'f3'.*model version {version}"):
        predict_session(features.drop(columns="f3"), days[81], 1, version, None, NAMES)
    # the same through the stage, on a stored partition written without the column
    good = store.partition_path(FEATURES, days[82]).read_bytes()
    store.write_sessions(FEATURES, features[features["date"] == days[82]].drop(columns="f3"), days[82:83])
    with pytest.raises(AlphaInputError, match=rf"{FEATURES} partition {days[82]:%Y-%m-%d} has no column 'f3'"):
        predict_sessions(store, days[80:83])
    store.partition_path(FEATURES, days[82]).write_bytes(good)
    artifact = store.table_dir("alpha_models") / f"{version}.pkl"
    artifact.write_bytes(artifact.read_bytes()[:100])
    with pytest.raises(AlphaModelError, match=f"model version {version}.*sha256"):
        predict_sessions(store, days[80:83])
    assert {s: store.partition_path(ALPHA_PREDICTIONS, s).read_bytes() for s in days[80:83]} == before
