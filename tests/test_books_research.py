"""The new families through the research chain on the research fixture: optimisation, validation
(with shorts in strategy_positions), cards and the allocation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alphatwin_pipelines.portfolio import AllocationPolicy, Constraints
from alphatwin_pipelines.reports import GateThresholds, ValidationSettings
from alphatwin_pipelines.reproducibility import replay_metrics
from alphatwin_pipelines.stages.cards import build_strategy_cards
from alphatwin_pipelines.stages.optimisation import OptimisationConfig, optimise_strategies, select_pairs, study_plan
from alphatwin_pipelines.stages.portfolio import allocate_portfolio
from alphatwin_pipelines.stages.validation import validate_strategies
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.strategies import StrategySpec
from alphatwin_pipelines.strategies.spec import ALL_FAMILIES, BOOK_FAMILIES
from alphatwin_pipelines.tables import OPTIMISED, STRATEGY_POSITIONS, TOP_PAIRS

FAMILIES = ("adx_trend", "volume_momentum", "xs_momentum", "xs_reversal", "pairs")
CONFIG = OptimisationConfig(families=FAMILIES, levels=(0,), book_levels=(0,), n_trials=3, shortlist_size=8,
                            train_years=1.0, n_pairs=2)
LENIENT = ValidationSettings(train=126, test=63, trials_per_window=3, thresholds=GateThresholds(min_dsr=0.0, max_pbo=1.0, min_oos_sharpe=-100.0,
                                                    min_information_ratio=-100.0))


def test_default_optimisation_registers_every_family():
    config = OptimisationConfig()
    assert config.families == ALL_FAMILIES and set(BOOK_FAMILIES) <= set(config.families)
    plan = study_plan(config)
    assert {(f, lv) for f, lv in plan if f in BOOK_FAMILIES} == {(f, 0) for f in BOOK_FAMILIES}
    assert len(plan) == 7 * 12 + 4


def test_new_families_flow_from_optimisation_to_the_allocation(research_dir):
    store = TableStore(research_dir)
    optimise_strategies(store, CONFIG)
    table = store.read_table(OPTIMISED)
    assert sorted(zip(table["family"], table["level"])) == sorted(study_plan(CONFIG))
    session = store.stored_sessions(TOP_PAIRS)[-1]
    pairs = select_pairs(store, session, 2)
    pair_rows = table[table["family"] == "pairs"]
    for row in pair_rows.itertuples():
        spec = StrategySpec.from_json(row.spec_json)
        assert spec.pairs == pairs and json.loads(row.symbols_json) == sorted({s for p in pairs for s in p})
        replayed = replay_metrics(row.record_json, research_dir)  # the spec carries its pairs
        assert replayed["objective"] == row.is_sharpe
    run = validate_strategies(store, LENIENT)
    assert set(run.reports["family"]) == set(FAMILIES)
    failed = run.reports[~run.reports["passed"]]
    # with lenient gates only a walk-forward that never traded (a pairs spec on synthetic data) may fail
    assert failed["reasons"].str.contains("not measurable").all() and run.reports["passed"].sum() >= 3, \
        failed[["family", "level", "reasons"]].to_dict("records")
    positions = store.read_table(STRATEGY_POSITIONS)
    assert {"gross_exposure", "net_exposure"} <= set(positions.columns)
    by_strategy = positions.groupby("strategy_id")
    np.testing.assert_allclose(by_strategy["weight"].apply(lambda w: w.abs().sum()), by_strategy["gross_exposure"].first())
    np.testing.assert_allclose(by_strategy["weight"].sum(), by_strategy["net_exposure"].first())
    long_short = [r.strategy_id for r in run.reports.itertuples()
                  if r.family in BOOK_FAMILIES and StrategySpec.from_json(r.spec_json).params.get("mode", "long_short")
                  == "long_short"]
    shorts = positions[positions["strategy_id"].isin(long_short) & (positions["weight"] < 0)]
    assert len(shorts) > 0  # shorts are real in the positions a book hands on
    cards = build_strategy_cards(store)
    book_cards = [c for c in cards.cards if c.data["family"] in BOOK_FAMILIES + ("adx_trend",)]
    assert book_cards and all(any("not exportable to pine" in u for u in c.unsupported) for c in book_cards)
    assert not cards.errors
    allocation = allocate_portfolio(store, AllocationPolicy(constraints=Constraints(max_weight=1.0, sector_cap=None,
                                                                                    cluster_cap=None)))
    assert abs(allocation.allocation.weights.sum() - 1.0) < 1e-9
