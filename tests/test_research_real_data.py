"""The research chain on real S&P 500 bars: daily stages, optimisation, walk-forward validation, allocation.

20 real symbols across the sectors, 2017-2020, through the same stage functions the assets call,
with the default gates and a small trial budget (one level per family: every family still runs on
real bars; the research budget, 100 symbols x 10 years with the alpha chain for ml_rank, is
benchmarks/bench_research_real.py's job, and its figures are in benchmarks/README.md). On these
data no strategy passes every default gate (as at research scale), so the chain ends with an
all-cash allocation that names the gates that stopped them; a strategy that does pass must meet
every threshold, and then the chain ends with an allocation of passing strategies only.
"""

from __future__ import annotations

import json

import pytest

from alphatwin_pipelines.portfolio import AllocationPolicy, CashAllocation
from alphatwin_pipelines.reports import GateThresholds, ValidationSettings
from alphatwin_pipelines.stages.optimisation import OptimisationConfig, optimise_strategies, study_plan
from alphatwin_pipelines.stages.portfolio import allocate_portfolio
from alphatwin_pipelines.stages.validation import validate_strategies
from alphatwin_pipelines.tables import ALLOCATIONS, OPTIMISED, VALIDATION
from tests.fixtures.research import build_real_research_data

pytestmark = pytest.mark.slow

SYMBOLS = ["AAPL", "MSFT", "INTC", "JPM", "BAC", "JNJ", "PFE", "UNH", "XOM", "CVX", "KO", "PG", "WMT", "HD",
           "MCD", "VZ", "CAT", "HON", "NEE", "AMT"]
START, END = "2017-01-03", "2020-12-31"
CONFIG = OptimisationConfig(levels=(0,), n_trials=8, batch_size=8, shortlist_size=20, train_years=3.0, n_pairs=2)
SETTINGS = ValidationSettings(train=252, test=126, trials_per_window=4)
# what each gate's reason starts with (reports.gates)
REASON_PREFIX = {"dsr": "DSR", "pbo": "PBO", "oos_sharpe": "out-of-sample Sharpe", "benchmark": "benchmarks"}


@pytest.fixture(scope="module")
def real_store(sp500_bars, shared_data, tmp_path_factory):
    return build_real_research_data(tmp_path_factory.mktemp("real") / "data", sp500_bars,
                                    shared_data / "sp500_constituents.csv", SYMBOLS, START, END)


def test_the_research_chain_runs_to_its_verdict_on_real_bars(real_store):
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

    thresholds = GateThresholds()
    for v in run.validations:
        assert len(v.information_ratios) == 3 and len(v.windows) > 0  # three benchmarks, a real walk-forward
        # each failed gate is the one its statistic says, and its reason says so
        assert ("dsr" in v.failures) == (not v.dsr >= thresholds.min_dsr)
        assert ("pbo" in v.failures) == (not v.pbo <= thresholds.max_pbo)
        assert ("oos_sharpe" in v.failures) == (not v.oos_metrics["sharpe"] >= thresholds.min_oos_sharpe)
        assert ("benchmark" in v.failures) == (not v.information_ratio > thresholds.min_information_ratio)
        assert all(reason.startswith(REASON_PREFIX[gate]) for gate, reason in v.failures.items())
    print(f"{int(reports['passed'].sum())} of {len(reports)} strategies passed; gates failed:\n"
          + "\n".join(f"{v.spec.family} L{v.spec.level}: {sorted(v.failures)}" for v in run.validations))

    passed = reports[reports["passed"]]
    run = allocate_portfolio(store, AllocationPolicy())  # the chain ends with an allocation either way
    stored = store.read_table(ALLOCATIONS)
    assert stored["allocation_version"].unique().tolist() == [run.allocation.version]
    if len(passed):
        allocation = run.allocation
        assert abs(allocation.weights.sum() - 1.0) < 1e-9 and (allocation.weights >= 0).all()
        assert set(allocation.weights.index) <= set(passed["strategy_id"]) and not allocation.violations()
    else:  # nothing earned capital: the book is all cash, and the allocation says why
        assert isinstance(run.allocation, CashAllocation)
        assert stored[["kind", "name", "weight"]].values.tolist() == [["cash", "cash", 1.0]]
        most_common = reports["reasons"].str.split("; ").explode().value_counts().index[0]
        assert most_common in run.allocation.reason
