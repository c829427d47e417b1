"""The portfolio stage and asset on contract-shaped inputs over real S&P 500 symbols and sectors."""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd
import pytest

from alphatwin_pipelines.portfolio import AllocationPolicy, Constraints
from alphatwin_pipelines.portfolio.synthetic import validation_rows, write_inputs
from alphatwin_pipelines.schema import frame_to_arrow
from alphatwin_pipelines.stages.portfolio import allocate_portfolio, version_table
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import ALLOCATIONS, REBALANCE_SUGGESTIONS, STRATEGY_RETURNS, VALIDATION
from alphatwin_pipelines.universe import parse_universe
from assets.portfolio import (CHECK_CAPS_BIND, CHECK_STRATEGIES_PASSED, CHECK_VERSION_STORED, CHECK_WEIGHTS_VALID,
                              portfolio_allocations)
from assets.resources import StorageResource

CONTRACT = ["allocation_version", "as_of", "method", "kind", "name", "weight", "sector", "risk_contribution",
            "spec_hashes", "scanner_partition"]


@pytest.fixture
def inputs(shared_data, data_dir):
    """60 seeded strategies over the real constituents (80 % pass validation)."""
    universe = parse_universe(str(shared_data / "sp500_constituents.csv"))
    store = TableStore(data_dir)
    passed = write_inputs(store, universe, n_strategies=60, n_sessions=252, seed=11)
    return store, passed, universe


def _materialize(data_dir, **config):
    return dg.materialize([portfolio_allocations], resources={"storage": StorageResource(data_dir=str(data_dir))},
                          run_config={"ops": {ALLOCATIONS: {"config": config}}} if config else None, raise_on_error=False)


def _bytes(store: TableStore, version: str) -> dict:
    tables = [ALLOCATIONS, REBALANCE_SUGGESTIONS, version_table(version)]
    return {name: store.whole_path(name).read_bytes() for name in tables}


def test_stage_allocates_only_passed_strategies_in_the_contract_columns(inputs):
    store, passed, universe = inputs
    run = allocate_portfolio(store, AllocationPolicy(constraints=Constraints(max_weight=0.1, sector_cap=0.4)))
    stored = pd.read_parquet(run.version_path)
    assert list(stored.columns[: len(CONTRACT)]) == CONTRACT
    strategies = stored[stored["kind"] == "strategy"]
    assert sorted(strategies["name"]) == sorted(passed)
    assert strategies["weight"].sum() == pytest.approx(1.0, abs=1e-9) and (strategies["weight"] >= 0).all()
    assert strategies["risk_contribution"].sum() == pytest.approx(strategies["expected_volatility"].iloc[0])
    symbols = stored[stored["kind"] == "symbol"]
    sectors = universe.set_index("symbol")["sector"]
    assert (symbols["sector"].to_numpy() == sectors.reindex(symbols["name"]).to_numpy()).all()
    assert symbols["weight"].sum() == pytest.approx(1.0, abs=1e-9)  # baskets are fully invested
    assert symbols["weight"].abs().groupby(symbols["sector"]).sum().max() <= 0.4 + 1e-6
    behind = {s for hashes in symbols["spec_hashes"] for s in json.loads(hashes)}
    assert behind <= set(passed) and stored["allocation_version"].nunique() == 1
    assert store.whole_path(ALLOCATIONS).read_bytes() == run.version_path.read_bytes()


def test_a_new_version_leaves_older_versions_untouched(inputs):
    store, _, _ = inputs
    first = allocate_portfolio(store, AllocationPolicy(method="hrp"))
    kept = first.version_path.read_bytes()
    second = allocate_portfolio(store, AllocationPolicy(method="min_volatility"))
    assert second.allocation.version != first.allocation.version
    assert first.version_path.read_bytes() == kept
    assert pd.read_parquet(store.whole_path(ALLOCATIONS))["method"].unique().tolist() == ["min_volatility"]


def test_a_correlation_break_is_recorded_as_a_rebalance_suggestion(inputs):
    store, passed, _ = inputs
    returns = store.read_table(STRATEGY_RETURNS)
    dates = sorted(returns["date"].unique())
    recent = returns["date"] >= dates[-63]
    shared = returns.loc[recent, "date"].map(pd.Series(range(len(dates[-63:])), index=dates[-63:]) % 2 * 0.04 - 0.02)
    returns.loc[recent, "return"] += shared  # every strategy now moves together
    store.write_table(STRATEGY_RETURNS, frame_to_arrow(returns))
    run = allocate_portfolio(store, AllocationPolicy(constraints=Constraints(max_weight=0.1)))
    suggestion = pd.read_parquet(run.suggestions_path).iloc[0]
    assert bool(suggestion["rebalance_suggested"]) and suggestion["mean_abs_change"] > 0.25
    assert suggestion["allocation_version"] == run.allocation.version and "rebalance suggested" in suggestion["reason"]


def test_materialising_twice_writes_the_same_bytes_and_reports_the_version(inputs, data_dir):
    store, passed, _ = inputs
    first = _materialize(data_dir)
    assert first.success
    metadata = first.asset_materializations_for_node(ALLOCATIONS)[0].metadata
    version = metadata["allocation_version"].value
    written = _bytes(store, version)
    checks = {e.check_name: e.passed for e in first.get_asset_check_evaluations()}
    assert checks == {CHECK_WEIGHTS_VALID: True, CHECK_VERSION_STORED: True, CHECK_CAPS_BIND: True,
                      CHECK_STRATEGIES_PASSED: True}
    stored = pd.read_parquet(store.whole_path(version_table(version)))
    assert metadata["as_of"].value == f"{pd.Timestamp(stored['as_of'].iloc[0]):%Y-%m-%d}" == "2024-12-31"
    assert metadata["plot_preview"].value.startswith("![allocation](data:image/png;base64,")
    assert (data_dir / "reports" / "allocation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    second = _materialize(data_dir)
    assert second.success
    assert second.asset_materializations_for_node(ALLOCATIONS)[0].metadata["allocation_version"].value == version
    assert _bytes(store, version) == written


def _failure_message(result) -> str:
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data
    assert failure.user_failure_data is not None  # a dg.Failure, not a crash
    return failure.user_failure_data.description


def test_no_passing_strategy_allocates_cash_twice_with_the_same_version_and_says_why(inputs, data_dir):
    store, _, _ = inputs
    reports = store.read_table(VALIDATION)
    rows = validation_rows(list(reports["strategy_id"]), [False] * len(reports))
    rows["scanner_partition"] = "2024-12-30"
    rows.loc[rows.index[7], "scanner_partition"] = "2024-12-31"  # as_of: the newest partition validation used
    store.write_table(VALIDATION, frame_to_arrow(rows))
    first = _materialize(data_dir)
    assert first.success
    metadata = first.asset_materializations_for_node(ALLOCATIONS)[0].metadata
    version = metadata["allocation_version"].value
    assert metadata["cash"].value.startswith("cash: no strategy passed (none of the 60 strategies")
    assert "dsr below 0.95 (60)" in metadata["cash"].value and metadata["strategies"].value == 0
    checks = {e.check_name: e for e in first.get_asset_check_evaluations()}
    assert {name: e.passed for name, e in checks.items()} == {
        CHECK_WEIGHTS_VALID: True, CHECK_VERSION_STORED: True, CHECK_CAPS_BIND: True, CHECK_STRATEGIES_PASSED: False}
    passed = checks[CHECK_STRATEGIES_PASSED]
    assert passed.severity == dg.AssetCheckSeverity.WARN and "dsr below 0.95 (60)" in passed.description
    stored = pd.read_parquet(store.whole_path(version_table(version)))
    assert stored[["kind", "name", "weight", "scanner_partition"]].to_records(index=False).tolist() == [
        ("cash", "cash", 1.0, "2024-12-31")]
    assert stored["allocation_version"].tolist() == [version] and f"{stored['as_of'].iloc[0]:%Y-%m-%d}" == "2024-12-31"
    assert (stored[["expected_return", "expected_volatility"]] == 0).all(axis=None)
    assert not pd.read_parquet(store.whole_path(REBALANCE_SUGGESTIONS))["rebalance_suggested"].iloc[0]
    written = _bytes(store, version)
    second = _materialize(data_dir)
    assert second.success
    assert second.asset_materializations_for_node(ALLOCATIONS)[0].metadata["allocation_version"].value == version
    assert _bytes(store, version) == written


def test_infeasible_caps_fail_the_asset_with_the_cap_to_relax(inputs, data_dir):
    message = _failure_message(_materialize(data_dir, max_weight=0.01))
    assert "Raise max_weight to at least 0.0227" in message  # 44 passed strategies: 1/44
    assert not (data_dir / f"{ALLOCATIONS}.parquet").exists()


def _pass_only(store: TableStore, count: int) -> list[str]:
    ids = sorted(store.read_table(VALIDATION)["strategy_id"])
    store.write_table(VALIDATION, frame_to_arrow(validation_rows(ids, [i < count for i in range(len(ids))])))
    return ids[:count]


def test_default_caps_that_cannot_bind_warn_and_the_run_still_allocates(inputs, data_dir):
    store, _, _ = inputs
    passed = _pass_only(store, 2)  # the default max_weight=0.25 needs at least 4
    result = _materialize(data_dir)
    assert result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    caps = evaluations[CHECK_CAPS_BIND]
    assert not caps.passed and caps.severity == dg.AssetCheckSeverity.WARN
    assert caps.description.startswith("max_weight relaxed from its default 0.25 to 0.5: only 2 strategies passed")
    assert "max_weight" in caps.metadata["relaxed_caps"].value
    assert evaluations[CHECK_WEIGHTS_VALID].passed and evaluations[CHECK_VERSION_STORED].passed
    metadata = result.asset_materializations_for_node(ALLOCATIONS)[0].metadata
    assert metadata["caps_used"].value["max_weight"] == 0.5
    assert "| max_weight | 0.25 | 0.5 |" in metadata["caps_relaxed"].value
    stored = pd.read_parquet(store.whole_path(version_table(metadata["allocation_version"].value)))
    weights = stored[stored["kind"] == "strategy"].set_index("name")["weight"]
    assert sorted(weights.index) == passed and weights.max() <= 0.5 + 1e-6
    assert weights.sum() == pytest.approx(1.0, abs=1e-9)


def test_the_same_cap_set_explicitly_still_fails_the_run(inputs, data_dir):
    store, _, _ = inputs
    _pass_only(store, 2)
    message = _failure_message(_materialize(data_dir, max_weight=0.25))
    assert "max_weight=0.25 is infeasible for 2 strategies" in message and "at least 0.5000" in message
