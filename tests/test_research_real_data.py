"""The research chain on real S&P 500 bars: daily stages, optimisation, walk-forward validation, allocation.

40 real symbols across every sector, 2016-2020, through the same stage functions the assets call, with
a small trial budget (the default budget is benchmarks/bench_research.py's job). The chain must run to
the end: a validation report and page per study, and an allocation of the strategies that passed every
gate, the benchmark gate included, or, when none did, the portfolio stage's clear refusal naming the
most common reasons.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from alphatwin_pipelines.portfolio import AllocationPolicy
from alphatwin_pipelines.reports import ValidationSettings
from alphatwin_pipelines.stages.optimisation import OptimisationConfig, optimise_strategies, study_plan
from alphatwin_pipelines.stages.portfolio import NoPassingStrategiesError, allocate_portfolio
from alphatwin_pipelines.stages.validation import validate_strategies
from alphatwin_pipelines.tables import OPTIMISED, VALIDATION
from tests.fixtures.research import build_real_research_data

pytestmark = pytest.mark.slow

SYMBOLS = ["AAPL", "MSFT", "NVDA", "INTC", "CSCO", "ORCL", "JPM", "BAC", "WFC", "GS", "JNJ", "PFE", "MRK", "UNH",
           "ABT", "XOM", "CVX", "COP", "SLB", "KO", "PEP", "PG", "WMT", "COST", "HD", "MCD", "NKE", "DIS", "T",
           "VZ", "CAT", "BA", "HON", "GE", "NEE", "DUK", "SO", "AMT", "SPG", "LIN"]
START, END = "2016-01-04", "2020-12-31"
CONFIG = OptimisationConfig(levels=(0, 3), n_trials=16, batch_size=8, shortlist_size=40, train_years=3.0, n_pairs=3)
SETTINGS = ValidationSettings(train=252, test=126, trials_per_window=8)


@pytest.fixture(scope="module")
def real_store(sp500_bars, shared_data, tmp_path_factory):
    return build_real_research_data(tmp_path_factory.mktemp("real") / "data", sp500_bars,
                                    shared_data / "sp500_constituents.csv", SYMBOLS, START, END)


def test_the_research_chain_runs_end_to_end_on_real_bars(real_store):
    store = real_store
    optimised = optimise_strategies(store, CONFIG).strategies
    # ml_rank needs alpha_predictions, which this chain does not build: it is skipped, every other study runs
    expected = [(family, level) for family, level in study_plan(CONFIG) if family != "ml_rank"]
    assert sorted(zip(optimised["family"], optimised["level"])) == sorted(expected)
    assert set(json.loads(optimised["symbols_json"].iloc[0])) <= set(SYMBOLS)

    run = validate_strategies(store, SETTINGS)
    reports = store.read_table(VALIDATION)
    assert len(reports) == len(store.read_table(OPTIMISED))
    assert all((store.data_dir / path).exists() for path in reports["report_path"])
    # the deflated Sharpe counts every trial of the family: the in-sample studies and every window's
    family_studies = optimised.groupby("family")["n_trials"].sum()
    counted = reports.groupby("family")["dsr_n_trials"].max()
    assert (counted >= family_studies.reindex(counted.index)).all()
    # every failure says which gate and why; the benchmark gate is one of them
    failed = reports[~reports["passed"]]
    assert failed["reasons"].str.len().gt(0).all()
    print(f"{int(reports['passed'].sum())} of {len(reports)} strategies passed; reasons:\n"
          + failed["reasons"].str.split("; ").explode().str.split(":").str[0].value_counts().to_string())

    if reports["passed"].any():
        allocation = allocate_portfolio(store, AllocationPolicy()).allocation
        assert abs(allocation.weights.sum() - 1.0) < 1e-9 and set(allocation.weights.index) <= set(
            reports.loc[reports["passed"], "strategy_id"])
        assert not allocation.violations()
        print(f"allocation {allocation.version}: {len(allocation.weights)} strategies, "
              f"relaxed caps {[r.cap for r in allocation.relaxations]}")
    else:
        with pytest.raises(NoPassingStrategiesError, match="most common reasons"):
            allocate_portfolio(store, AllocationPolicy())
    assert isinstance(run.returns, pd.DataFrame)
