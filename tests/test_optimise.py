"""Optuna studies: reproducible, pruned, resumable; the stage and asset honour the table contract."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines.optimise import NO_TRADE_SHARPE, PortfolioObjective, ProgressLogger, portfolio_metrics, run_study
from alphatwin_pipelines.reproducibility import code_version, content_hash, input_hashes, library_versions, replay_metrics
from alphatwin_pipelines.schema import frame_to_arrow
from alphatwin_pipelines.tables import read_adjusted
from alphatwin_pipelines.stages.optimisation import (
    OPTIMISED_COLUMNS,
    TRIAL_COLUMNS,
    OptimisationConfig,
    optimise_strategies,
    select_shortlist,
)
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.strategies import MarketArrays, StrategySpec
from alphatwin_pipelines.tables import CLEANED, OPTIMISATION_TRIALS, OPTIMISED, SCANNER, UNIVERSE

START = "2024-01-02"  # 2023 warms the indicators up


@pytest.fixture(scope="module")
def market(research_data) -> MarketArrays:
    bars = read_adjusted(TableStore(research_data))
    symbols = sorted(bars["symbol"].unique())[:8]
    return MarketArrays.from_bars(bars[bars["symbol"].isin(symbols)], price="adj")


def _sqlite(tmp_path, name="optuna.db") -> str:
    return f"sqlite:///{tmp_path / name}"


def test_seeded_studies_reproduce_exactly_and_the_seed_matters(market, tmp_path):
    runs = [run_study(PortfolioObjective(market, "ma_cross", 1, START), "s", _sqlite(tmp_path, f"{i}.db"), 6, seed)
            for i, seed in enumerate((42, 42, 7))]
    pd.testing.assert_frame_equal(runs[0].trials, runs[1].trials)
    assert (runs[0].best_params, runs[0].best_value) == (runs[1].best_params, runs[1].best_value)
    assert runs[0].trials["params_json"].tolist() != runs[2].trials["params_json"].tolist()


def test_the_pruner_stops_trials_whose_estimate_is_below_the_median_before_the_backtest(market, tmp_path):
    import optuna

    result = run_study(PortfolioObjective(market, "donchian_breakout", 0, START), "p", _sqlite(tmp_path), 16, 3,
                       pruner_startup=3)
    trials = optuna.load_study(study_name="p", storage=_sqlite(tmp_path)).trials
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert result.n_pruned == len(pruned) > 0
    for trial in pruned:
        assert "trades" not in trial.user_attrs  # stopped before the backtest
        earlier = [t.intermediate_values[0] for t in trials if t.state.name == "COMPLETE" and t.number < trial.number]
        assert trial.intermediate_values[0] == trial.user_attrs["estimate"] < np.median(earlier)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    estimates, values = [t.user_attrs["estimate"] for t in complete], [t.value for t in complete]
    assert np.corrcoef(estimates, values)[0, 1] > 0.5  # the estimate ranks trials like the backtest does


def test_an_interrupted_study_resumes_without_redoing_trials(market, tmp_path):
    import optuna

    objective = PortfolioObjective(market, "rsi_reversion", 2, START)
    first = run_study(objective, "r", _sqlite(tmp_path, "a.db"), 3, 42)
    abandoned = optuna.load_study(study_name="r", storage=_sqlite(tmp_path, "a.db")).ask()  # a run killed mid-trial
    resumed = run_study(objective, "r", _sqlite(tmp_path, "a.db"), 6, 42)
    straight = run_study(objective, "r", _sqlite(tmp_path, "b.db"), 6, 42)
    assert (first.ran, resumed.ran, resumed.n_trials) == (3, 3, 6)
    states = resumed.trials.set_index("trial_number")["state"]
    assert states[abandoned.number] == "FAIL"
    finished = resumed.trials[resumed.trials["state"] != "FAIL"].reset_index(drop=True)
    pd.testing.assert_frame_equal(finished.head(3), first.trials)
    assert finished["params_json"].tolist() == straight.trials["params_json"].tolist()
    assert run_study(objective, "r", _sqlite(tmp_path, "a.db"), 6, 42).ran == 0


def test_a_strategy_that_never_trades_scores_cash():
    dates = pd.bdate_range("2023-01-02", periods=300)
    flat = np.full((300, 3), 50.0)
    market = MarketArrays(flat, flat, flat, flat, np.full_like(flat, 1e6), dates, ("A", "B", "C"))
    metrics = portfolio_metrics(StrategySpec("ma_cross", {}, 0), market, dates[100])
    assert metrics["trades"] == 0 and math.isnan(metrics["sharpe"])
    assert metrics["objective"] == NO_TRADE_SHARPE == 0.0


def test_progress_lines_report_done_best_and_time_left(market, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="progress")
    ticks = iter(range(100))  # the clock advances one second per reading: at start, then at each line
    progress = ProgressLogger(logging.getLogger("progress"), "ma_cross L0", 4, lines=2, clock=lambda: float(next(ticks)))
    result = run_study(PortfolioObjective(market, "ma_cross", 0, START), "g", _sqlite(tmp_path), 4, 1, progress=progress)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and lines[-1].startswith("ma_cross L0: 4/4 trials")
    assert f"best Sharpe {result.best_value:.3f} (trial {result.best_trial})" in lines[-1]
    assert lines[0].startswith("ma_cross L0: 2/4 trials") and "1.0 s elapsed, ~1.0 s left" in lines[0]
    assert "2.0 s elapsed, ~0.0 s left" in lines[-1]
    caplog.clear()
    resumed_progress = ProgressLogger(logging.getLogger("progress"), "ma_cross L0", 6, lines=3)
    resumed = run_study(PortfolioObjective(market, "ma_cross", 0, START), "g", _sqlite(tmp_path), 6, 1,
                        progress=resumed_progress)
    lines = [r.getMessage() for r in caplog.records]  # a resumed study counts the trials it already had
    assert len(lines) == 1 and lines[0].startswith("ma_cross L0: 6/6 trials")
    assert f"best Sharpe {resumed.best_value:.3f} (trial {resumed.best_trial})" in lines[0]


def _scanner_rows(day, rows):
    return pd.DataFrame([{"date": pd.Timestamp(day), "symbol": s, "sector": sec, "family": "trend", "rank_overall": r}
                         for s, sec, r in rows])


def test_shortlist_takes_distinct_top_ranked_symbols_of_the_last_partition(tmp_path):
    store = TableStore(tmp_path)
    store.write_partition(SCANNER, "2024-06-03", frame_to_arrow(_scanner_rows("2024-06-03", [("OLD", "Tech", 1)])))
    rows = [("AAA", "Tech", 3), ("BBB", "Energy", 1), ("AAA", "Tech", 2), ("CCC", "Tech", 5), ("DDD", "Energy", 4)]
    store.write_partition(SCANNER, "2024-06-04", frame_to_arrow(_scanner_rows("2024-06-04", rows)))
    top = select_shortlist(store, 3)
    assert top.symbols == ["AAA", "BBB", "DDD"] and top.scanner_partition == pd.Timestamp("2024-06-04")
    assert select_shortlist(store, 5, sector="tech").symbols == ["AAA", "CCC"]
    assert select_shortlist(store, 5, symbols=["ccc", "DDD", "ZZZ"]).symbols == ["CCC", "DDD"]
    with pytest.raises(ValueError, match=r"sector 'Health'.*\['Energy', 'Tech'\]"):
        select_shortlist(store, 5, sector="Health")
    with pytest.raises(ValueError, match="none of the symbols"):
        select_shortlist(store, 5, symbols=["ZZZ"])


def test_shortlist_fills_up_with_the_most_liquid_symbols_of_the_scanner_session(tmp_path):
    store = TableStore(tmp_path)
    days = ["2024-06-03", "2024-06-04", "2024-06-05"]
    # dollar volume: EEE 3e6 > FFF 2e6 = GGG 2e6 > BBB 1e6; HHH trades only before the session; LATE only after it
    volume = {"AAA": 50, "BBB": 10, "EEE": 30, "FFF": 20, "GGG": 20, "HHH": 900, "LATE": 900}
    for i, day in enumerate(days):
        listed = [s for s in volume if (s != "HHH" or i == 0) and s != "LATE"]
        store.write_partition(CLEANED, day, frame_to_arrow(pd.DataFrame(
            {"symbol": listed, "date": pd.Timestamp(day), "close": 100_000.0, "volume": [volume[s] for s in listed]})))
    store.write_partition(CLEANED, "2024-06-06", frame_to_arrow(pd.DataFrame(
        {"symbol": ["LATE"], "date": pd.Timestamp("2024-06-06"), "close": 1e6, "volume": [1e6]})))
    store.write_partition(SCANNER, "2024-06-05", frame_to_arrow(_scanner_rows("2024-06-05", [("AAA", "Tech", 1)])))
    store.write_table(UNIVERSE, frame_to_arrow(pd.DataFrame(
        {"symbol": list(volume), "sector": ["Tech", "Energy", "Tech", "Energy", "Tech", "Tech", "Tech"]})))
    shortlist = select_shortlist(store, 4)
    assert shortlist.symbols == ["AAA", "EEE", "FFF", "GGG"] and shortlist.filled == ["EEE", "FFF", "GGG"]
    assert select_shortlist(store, 10).symbols == ["AAA", "BBB", "EEE", "FFF", "GGG"]  # never HHH or LATE
    assert select_shortlist(store, 3, sector="energy").symbols == ["BBB", "FFF"]
    assert select_shortlist(store, 5, symbols=["bbb", "ggg", "HHH"]).filled == ["BBB", "GGG"]
    assert select_shortlist(store, 1).filled == []  # the scanner's own symbols come first


def test_bad_configuration_names_the_rule():
    with pytest.raises(ValueError, match="unknown strategy families"):
        OptimisationConfig(families=("ma_crossover",))
    with pytest.raises(ValueError, match="levels must be within"):
        OptimisationConfig(levels=(12,))


TINY = OptimisationConfig(families=("ma_cross", "bollinger_reversion"), levels=(0, 4), n_trials=3, shortlist_size=5,
                          train_years=1.0)


def test_stage_writes_the_contract_reproducibly_and_replays_bit_identically(research_dir, tmp_path):
    import shutil

    pristine = tmp_path / "pristine"
    shutil.copytree(research_dir, pristine)
    store = TableStore(research_dir)
    report = optimise_strategies(store, TINY)
    table, trials = store.read_table(OPTIMISED), store.read_table(OPTIMISATION_TRIALS)
    assert list(table.columns) == OPTIMISED_COLUMNS and list(trials.columns) == TRIAL_COLUMNS
    assert list(zip(table["family"], table["level"])) == [("ma_cross", 0), ("ma_cross", 4),
                                                          ("bollinger_reversion", 0), ("bollinger_reversion", 4)]
    last_scan = store.stored_sessions(SCANNER)[-1]
    assert (table["scanner_partition"] == f"{last_scan:%Y-%m-%d}").all() and (table["end"] == last_scan).all()
    assert table["start"].iloc[0] > store.stored_sessions(CLEANED)[0]  # a year of warm-up before the window
    assert json.loads(table["symbols_json"].iloc[0]) == report.shortlist.symbols == select_shortlist(store, 5).symbols
    assert (table["n_trials"] == 3).all() and (table["n_complete"] + table["n_pruned"] == 3).all()
    for row in table.itertuples():
        spec = StrategySpec.from_json(row.spec_json)
        assert row.strategy_id == spec.spec_hash() and row.study_name.startswith(f"alphatwin/{row.family}/L{row.level}/")
        best = trials[(trials["strategy_id"] == row.strategy_id) & (trials["state"] == "COMPLETE")]["sharpe"].max()
        assert row.is_sharpe == best  # the stored metric is the study's best value, recomputed
        record = json.loads(row.record_json)
        assert record["code_version"] == code_version() and record["libraries"] == library_versions()
        replayed = replay_metrics(row.record_json, pristine)
        assert (replayed["objective"], replayed["sortino"], replayed["trades"]) == (row.is_sharpe, row.is_sortino, row.is_trades)
    before = {n: store.whole_path(n).read_bytes() for n in (OPTIMISED, OPTIMISATION_TRIALS)}
    assert optimise_strategies(store, TINY).trials_run == 0  # resumed: nothing to redo
    optimise_strategies(TableStore(pristine), TINY)  # a fresh storage replays the same studies
    for name, data in before.items():
        assert store.whole_path(name).read_bytes() == data == TableStore(pristine).whole_path(name).read_bytes()


def test_dropping_cached_indicators_past_the_budget_changes_no_table(research_dir, tmp_path, monkeypatch):
    import shutil

    from alphatwin_pipelines.strategies import families

    other = tmp_path / "other"
    shutil.copytree(research_dir, other)
    optimise_strategies(TableStore(research_dir), TINY)
    computed, make_room = [], families.make_room
    monkeypatch.setattr(families, "INDICATOR_BUDGET", 0)  # every array dropped as the next one is cached
    monkeypatch.setattr(families, "make_room", lambda cache, incoming: (computed.append(len(cache)),
                                                                         make_room(cache, incoming)))
    optimise_strategies(TableStore(other), TINY)
    assert computed and max(computed) <= 1  # the cache never held more than the array in hand
    for name in (OPTIMISED, OPTIMISATION_TRIALS):
        pd.testing.assert_frame_equal(TableStore(other).read_table(name), TableStore(research_dir).read_table(name),
                                      check_exact=True)


def test_reproducibility_hashes_follow_file_bytes(research_dir):
    store = TableStore(research_dir)
    sessions = store.stored_sessions(CLEANED)[-2:]
    hashes = input_hashes(store, CLEANED, sessions)
    assert sorted(hashes) == [f"{CLEANED}/{d:%Y-%m-%d}" for d in sessions]
    path = store.partition_path(CLEANED, sessions[-1])
    digest = content_hash([path])
    path.write_bytes(path.read_bytes() + b"x")
    assert input_hashes(store, CLEANED, sessions)[f"{CLEANED}/{sessions[-1]:%Y-%m-%d}"] != hashes[f"{CLEANED}/{sessions[-1]:%Y-%m-%d}"]
    assert content_hash([path]) != digest


def test_asset_materialises_twice_to_the_same_bytes_with_plot_and_check(research_dir):
    import dagster as dg

    from assets.resources import DaskResource, OptunaResource, StorageResource
    from assets.strategies import CHECK_ONE_ROW_PER_STUDY, CURVE_PNG, OptimisationRunConfig, optimised_strategies

    resources = {"storage": StorageResource(data_dir=str(research_dir)), "optuna": OptunaResource(),
                 "dask": DaskResource()}  # no scheduler: the studies run in process
    config = dg.RunConfig(ops={OPTIMISED: OptimisationRunConfig(families=["ts_momentum"], levels=[0, 1], n_trials=3,
                                                                shortlist_size=4, train_years=1.0)})
    outputs = []
    for _ in range(2):
        result = dg.materialize([optimised_strategies], resources=resources, run_config=config)
        assert result.success
        outputs.append(TableStore(research_dir).whole_path(OPTIMISED).read_bytes())
    assert outputs[0] == outputs[1]
    meta = result.asset_materializations_for_node(OPTIMISED)[0].metadata
    assert meta["n_trials_total"].value == 6 and meta["trials_run"].value == 0 and meta["dask_workers"].value == 0
    assert meta["optuna_storage"].value == "sqlite" and str(research_dir) not in json.dumps(str(meta["optuna_storage"]))
    assert meta["sharpe_vs_complexity"].value == str(research_dir / CURVE_PNG)
    assert (research_dir / CURVE_PNG).read_bytes().startswith(b"\x89PNG")
    assert "data:image/png;base64," in meta["sharpe_vs_complexity_plot"].value
    checks = result.get_asset_check_evaluations()
    assert [(c.check_name, c.passed) for c in checks] == [(CHECK_ONE_ROW_PER_STUDY, True)]
