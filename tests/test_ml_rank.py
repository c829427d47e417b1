"""The ml_rank family: the families' event loop, no look-ahead, and the research chain on the
research fixture with stored alpha predictions (walk-forward windows scored by models trained
only before each window's train end)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from alphatwin_pipelines.backtest.book import simulate_book
from alphatwin_pipelines.strategies import MAX_LEVEL, MarketArrays, StrategySpec
from alphatwin_pipelines.strategies.books import generate_book
from tests.test_books import CASH, COSTS, book_market, rank_loop


def scored_market(seed: int) -> MarketArrays:
    """The families' book market with model-like scores (NaN where a symbol has no bar or no score)."""
    m = book_market(seed)
    rng = np.random.default_rng(seed + 100)
    scores = {h: rng.standard_normal(m.shape) for h in (1, 5)}
    for s in scores.values():
        s[np.isnan(m.close)] = np.nan
        s[rng.random(m.shape) < 0.05] = np.nan  # a symbol the model did not score that session
    return m.with_scores({h: pd.DataFrame(s, index=m.dates, columns=list(m.symbols)) for h, s in scores.items()})


@pytest.mark.parametrize("params", [
    {"horizon": 1, "top_k": 2, "mode": "long_short", "rebalance": 5},
    {"horizon": 5, "top_k": 3, "mode": "long_only", "rebalance": 1},
])
def test_ml_rank_matches_the_event_loop(params):
    m = scored_market(4)
    result = simulate_book(generate_book(StrategySpec("ml_rank", params, 0), m), m, COSTS, CASH)
    s = m.scores[params["horizon"]]

    def score(t, i):
        return None if s[t, i] != s[t, i] else float(s[t, i])
    expected = rank_loop(m, score, params["top_k"], params["mode"], params["rebalance"])
    assert len(result.orders) > 20
    assert abs(result.total_return - expected) <= 1e-6, (result.total_return, expected)


def test_ml_rank_without_scores_names_what_to_materialise():
    with pytest.raises(ValueError, match="alpha_predictions scores of horizon 1"):
        generate_book(StrategySpec("ml_rank", {"horizon": 1}, 0), book_market(1))


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**16), cut=st.integers(150, 250), level=st.sampled_from([0, 5, MAX_LEVEL]))
def test_ml_rank_targets_never_look_ahead(seed, cut, level):
    """Rewriting every score and bar after ``cut`` never changes a target decided at or before it."""
    m = scored_market(9)
    rng = np.random.default_rng(seed)
    fields = {f: np.array(getattr(m, f)) for f in ("open", "high", "low", "close", "volume")}
    for f in fields:
        fields[f][cut + 1:] *= rng.uniform(0.5, 1.5)
    scores = {h: np.array(a) for h, a in m.scores.items()}
    for a in scores.values():
        a[cut + 1:] = rng.standard_normal(a[cut + 1:].shape)
    other = MarketArrays(**fields, dates=m.dates, symbols=m.symbols, scores=scores)
    for horizon in (1, 5):
        spec = StrategySpec("ml_rank", {"horizon": horizon, "rebalance": 3}, level)
        a, b = generate_book(spec, m).weights[: cut + 1], generate_book(spec, other).weights[: cut + 1]
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_allclose(np.nan_to_num(a), np.nan_to_num(b), rtol=0, atol=1e-12)


def test_scores_follow_the_market_when_selected():
    m = scored_market(2)
    sub = m.select(["B3", "B1"], start=m.dates[10], end=m.dates[50])
    np.testing.assert_array_equal(sub.score(5), m.score(5)[10:51][:, [3, 1]])


# ------------------------------------------------------------------ the research chain


ML_START, ML_END = "2023-03-01", "2024-12-31"
TRAINING = dict(horizons=(1, 5), train_sessions=40, folds=3, n_trials=2, n_estimators=10)


@pytest.fixture(scope="module")
def ml_dir(research_data, tmp_path_factory):
    """The research fixture with labels, two model versions per horizon (cutoffs 2024-06-03 and
    2024-09-03) and their predictions for every session from 2024-06-03 (about 35 s loaded: SHAP)."""
    import shutil

    from alphatwin_pipelines.alpha.dataset import model_features
    from alphatwin_pipelines.alpha.training import AlphaTrainingConfig
    from alphatwin_pipelines.calendar import sessions_between
    from alphatwin_pipelines.optimise.study import default_storage_url
    from alphatwin_pipelines.stages.alpha_labels import label_sessions
    from alphatwin_pipelines.stages.alpha_predictions import predict_sessions
    from alphatwin_pipelines.storage import TableStore
    from tests.alpha_support import train_and_store

    path = tmp_path_factory.mktemp("ml_rank") / "data"
    shutil.copytree(research_data, path)
    store = TableStore(path)
    label_sessions(store, sessions_between(ML_START, ML_END))
    for cutoff in ("2024-06-03", "2024-09-03"):
        train_and_store(store, cutoff, AlphaTrainingConfig(**TRAINING, as_of=cutoff), default_storage_url(path),
                        names=model_features())
    predict_sessions(store, sessions_between("2024-06-03", ML_END))
    return path


@pytest.mark.slow
def test_ml_rank_flows_from_optimisation_to_the_allocation(ml_dir, tmp_path, monkeypatch):
    import shutil

    from alphatwin_pipelines.alpha.catalogue import read_models
    from alphatwin_pipelines.portfolio import AllocationPolicy, Constraints
    from alphatwin_pipelines.reports import GateThresholds, ValidationSettings
    from alphatwin_pipelines.reproducibility import replay_metrics
    from alphatwin_pipelines.stages.cards import build_strategy_cards
    from alphatwin_pipelines.stages.optimisation import OptimisationConfig, optimise_strategies
    from alphatwin_pipelines.stages.portfolio import allocate_portfolio
    from alphatwin_pipelines.stages.validation import validate_strategies
    from alphatwin_pipelines.storage import TableStore
    from alphatwin_pipelines.tables import OPTIMISED

    path = tmp_path / "data"
    shutil.copytree(ml_dir, path)
    monkeypatch.setenv("ALPHATWIN_DATA_DIR", str(path))
    store = TableStore(path)
    config = OptimisationConfig(families=("ml_rank",), book_levels=(0, 3), n_trials=3,
                                shortlist_size=12, train_years=0.5)
    optimise_strategies(store, config)
    table = store.read_table(OPTIMISED)
    ml = table[table["family"] == "ml_rank"]
    assert sorted(ml["level"]) == [0, 3] and (ml["is_trades"] > 0).all()
    for row in ml.itertuples():
        assert replay_metrics(row.record_json, path)["objective"] == row.is_sharpe

    lenient = ValidationSettings(train=60, test=21, trials_per_window=2,
                                 thresholds=GateThresholds(min_dsr=0.0, max_pbo=1.0, min_oos_sharpe=-100.0,
                                                           min_information_ratio=-100.0))
    run = validate_strategies(store, lenient)
    reports = run.reports[run.reports["family"] == "ml_rank"]
    assert len(reports) == 2 and reports["passed"].all(), reports["reasons"].tolist()
    models = read_models(store)
    for v in (v for v in run.validations if v.spec.family == "ml_rank"):
        used = json.loads(reports.set_index("strategy_id").loc[v.strategy_id, "record_json"])["validation"]["window_models"]
        # every test window of every horizon was scored by a model trained only before its train end
        assert sorted({(u["horizon"], u["test_start"]) for u in used}) == sorted(
            (h, f"{w.test_start:%Y-%m-%d}") for h in (1, 5) for w in v.windows.itertuples())
        for u in used:
            assert u["cutoff"] == u["train_end"] and u["labels_known_through"] < u["train_end"]
            assert u["model_version"] not in set(models["model_version"])  # not a stored (later) model
        assert v.oos_returns.abs().sum() > 0  # the out-of-sample book traded

    again = validate_strategies(store, lenient)  # the window studies resume: the same models and reports
    pd.testing.assert_frame_equal(again.reports, run.reports)

    cards = build_strategy_cards(store)
    ml_cards = [c for c in cards.cards if c.data["family"] == "ml_rank"]
    assert len(ml_cards) == 2 and not cards.errors
    allocation = allocate_portfolio(store, AllocationPolicy(constraints=Constraints(max_weight=1.0, sector_cap=None,
                                                                                    cluster_cap=None)))
    assert set(reports["strategy_id"]) & set(allocation.allocation.weights.index)


def test_ml_rank_is_skipped_without_predictions(research_dir):
    from alphatwin_pipelines.stages.optimisation import OptimisationConfig, optimise_strategies
    from alphatwin_pipelines.storage import TableStore

    class Log:
        lines: list = []

        def info(self, msg):
            self.lines.append(msg)

        warning = info

    log = Log()
    report = optimise_strategies(TableStore(research_dir), OptimisationConfig(families=("ml_rank", "xs_reversal"),
                                                                               n_trials=2, shortlist_size=6,
                                                                               train_years=1.0), logger=log)
    assert list(report.strategies["family"]) == ["xs_reversal"]
    assert any("ml_rank skipped" in line and "alpha_predictions" in line for line in log.lines)


def test_window_scores_ignore_every_label_known_after_the_train_end(tmp_path):
    """A window's model and its test scores do not move when every label that became known at or
    after the train end (those of the test slice included) is rewritten."""
    from alphatwin_pipelines.alpha.scores import window_scores
    from alphatwin_pipelines.alpha.training import AlphaTrainingConfig
    from alphatwin_pipelines.optimise.study import default_storage_url
    from alphatwin_pipelines.storage import TableStore
    from tests.alpha_support import NAMES, planted_panel, write_panel

    features, labels = planted_panel(n_symbols=20, sessions=90)
    days = pd.DatetimeIndex(sorted(features["date"].unique()))
    train_end, test = days[60], days[61:75]
    setup = AlphaTrainingConfig(horizons=(1,), train_sessions=30, folds=3, n_trials=2, n_estimators=10)
    got = {}
    for name, later in (("real", labels), ("rewritten", labels.assign(fwd_return=np.where(
            labels["available"] >= train_end, -labels["fwd_return"] * 3.0, labels["fwd_return"])))):
        store = TableStore(tmp_path / name)
        write_panel(store, features, later)
        got[name] = window_scores(store, 1, train_end, test, default_storage_url(store.data_dir), setup, NAMES)
    a, b = got["real"], got["rewritten"]
    assert a.cutoff == train_end and a.labels_known_through < train_end
    assert a.model_version == b.model_version
    pd.testing.assert_frame_equal(a.scores, b.scores)
    assert list(a.scores.index) == list(test) and a.scores.notna().all().all()
