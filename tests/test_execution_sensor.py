"""The paper execution sensor and job on a real SQLite Dagster instance, against the research data."""

import re

import dagster as dg
import pytest

from alphatwin_pipelines.execution import PaperBroker, default_ledger_url, read_audit
from assets.resources import BrokerResource, StorageResource
from jobs.execution import EXECUTE_OP, PaperExecutionConfig, paper_execution_job
from schedules.execution import paper_execution_sensor, run_key_for
from test_execution_support import universe_symbols, write_allocation

pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning")


class AllocationConfig(dg.Config):
    as_of: str
    weights: dict[str, float]


@dg.asset(name="portfolio_allocations")
def portfolio_allocations(config: AllocationConfig, storage: StorageResource) -> dg.MaterializeResult:
    """Stands where the allocation stage will: writes one immutable version, reports it in metadata."""
    version = write_allocation(storage.data_dir, config.as_of, config.weights)
    return dg.MaterializeResult(metadata={"allocation_version": version, "as_of": config.as_of})


@dg.asset_check(asset="portfolio_allocations", name="weights_within_budget")
def weights_within_budget(config: AllocationConfig) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=sum(config.weights.values()) <= 1.0)


@dg.asset_check(asset="portfolio_allocations", name="relaxed_cap_warning")
def relaxed_cap_warning(config: AllocationConfig) -> dg.AssetCheckResult:
    """Stands for the allocation's WARN check (a default cap relaxed): informs, does not stop trading."""
    return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN)


SEEN_DURING_RUN = []


@dg.asset_check(asset="portfolio_allocations", name="sensor_probe")
def sensor_probe(context: dg.AssetCheckExecutionContext, config: AllocationConfig) -> dg.AssetCheckResult:
    """Ticks the sensor after the materialisation is stored but before its run has finished."""
    latest = context.instance.fetch_materializations(dg.AssetKey("portfolio_allocations"), limit=1).records
    SEEN_DURING_RUN.append((latest[0].run_id == context.run.run_id, _tick(context.instance)))
    return dg.AssetCheckResult(passed=True)


def _allocate(instance, data_dir, as_of, weights, checks=(weights_within_budget,)) -> str:
    config = {"config": {"as_of": as_of, "weights": weights}}
    check_ops = {f"portfolio_allocations_{key.name}": config for check in checks for key in check.check_keys}
    result = dg.materialize([portfolio_allocations, *checks], instance=instance,
                            resources={"storage": StorageResource(data_dir=str(data_dir))},
                            run_config={"ops": {"portfolio_allocations": config, **check_ops}})
    return result.asset_materializations_for_node("portfolio_allocations")[0].metadata["allocation_version"].value


def _tick(instance, cursor=None):
    return paper_execution_sensor(dg.build_sensor_context(instance=instance, cursor=cursor))


def _execute(instance, data_dir, request):
    return paper_execution_job.execute_in_process(
        run_config=request.run_config, instance=instance, tags=request.tags,
        resources={"storage": StorageResource(data_dir=str(data_dir)), "broker": BrokerResource()},
    )


def test_sensor_requests_each_passed_version_once_and_runs_leave_no_duplicate_orders(research_dir):
    symbols = universe_symbols(research_dir, 6)
    with dg.instance_for_test() as instance:
        first = _allocate(instance, research_dir, "2024-06-27", {s: 0.08 for s in symbols[:4]})
        failing = _allocate(instance, research_dir, "2024-06-27", {s: 0.3 for s in symbols[:4]})  # sums to 1.2
        second = _allocate(instance, research_dir, "2024-06-28", {s: 0.08 for s in symbols[2:]})

        tick = _tick(instance)
        keys = [r.run_key for r in tick.run_requests]
        assert keys == [run_key_for(first), run_key_for(second)] and run_key_for(failing) not in keys
        assert _tick(instance, tick.cursor).run_requests == []  # repeated tick: nothing new
        again = _tick(instance, tick.cursor)
        assert again.run_requests == [] and (again.cursor or tick.cursor) == tick.cursor
        restarted = _tick(instance)  # cursor lost: same versions, same run keys, Dagster dedupes them
        assert [r.run_key for r in restarted.run_requests] == keys
        assert restarted.cursor == tick.cursor

        results = [_execute(instance, research_dir, r) for r in [*tick.run_requests, *restarted.run_requests]]
        assert all(r.success for r in results)

    ledger = PaperBroker(default_ledger_url(research_dir))
    orders = ledger.orders()
    assert len(orders) == len({o["order_id"] for o in orders})
    by_version = {v: [o for o in orders if o["allocation_version"] == v] for v in (first, second)}
    assert sorted(o["symbol"] for o in by_version[first]) == symbols[:4]
    bought = {o["symbol"]: o["qty"] for o in by_version[first]}
    sold = {o["symbol"]: o["qty"] for o in by_version[second] if o["side"] == "sell"}
    assert all(sold[s] == bought[s] for s in symbols[:2])  # dropped by the second version: sold out
    assert {o["status"] for o in by_version[first]} == {"filled"}  # filled at the open after 2024-06-27
    first_summary = results[0].output_for_node(EXECUTE_OP)
    assert first_summary["submitted"] == 4 and first_summary["rejected"] == 0
    assert results[2].output_for_node(EXECUTE_OP)["superseded_by"] == second  # stale re-run trades nothing
    assert results[3].output_for_node(EXECUTE_OP)["submitted"] == 0
    assert len(read_audit(ledger.engine, "submitted")) == len(orders)


def test_job_rejects_orders_with_reasons_and_config_cannot_exceed_hard_bounds(research_dir):
    symbols = universe_symbols(research_dir, 3)
    version = write_allocation(research_dir, "2024-06-28", {symbols[0]: 0.2, symbols[1]: 0.05, symbols[2]: 0.05})
    resources = {"storage": StorageResource(data_dir=str(research_dir)), "broker": BrokerResource()}
    result = paper_execution_job.execute_in_process(
        run_config={"ops": {EXECUTE_OP: {"config": {"allocation_version": version}}}}, resources=resources)
    summary = result.output_for_node(EXECUTE_OP)
    assert summary["submitted"] == 2 and summary["rejected"] == 1
    output = next(e for e in result.events_for_node(EXECUTE_OP) if e.is_successful_output)
    reasons = output.step_output_data.metadata["rejected_reasons"].value
    share = float(re.search(r"would be ([0-9.]+)% of equity", reasons[symbols[0]]).group(1))
    assert list(reasons) == [symbols[0]] and 19.0 < share <= 20.0  # 20 % target, rounded down to whole shares
    rejected = read_audit(PaperBroker(default_ledger_url(research_dir)).engine, "rejected")
    assert [r["symbol"] for r in rejected] == [symbols[0]] and "max_position_weight 10.00%" in rejected[0]["detail"]

    with pytest.raises(Exception, match="exceeds the hard-coded bound 0.25"):
        PaperExecutionConfig(allocation_version=version, max_position_weight=0.5)
    with pytest.raises(Exception, match="exceeds the hard-coded bound"):
        paper_execution_job.execute_in_process(
            run_config={"ops": {EXECUTE_OP: {"config": {"allocation_version": version, "max_gross_exposure": 3.0}}}},
            resources=resources)
    assert len(PaperBroker(default_ledger_url(research_dir)).orders()) == 2  # the refused run placed nothing


def test_sensor_waits_for_the_materialising_run_and_skips_versionless_events(research_dir):
    symbols = universe_symbols(research_dir, 2)
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization("portfolio_allocations"))  # no version
        skipped = _tick(instance)
        assert skipped.run_requests == [] and skipped.cursor is not None
        version = _allocate(instance, research_dir, "2024-06-28", {s: 0.05 for s in symbols}, checks=(sensor_probe,))
        stored, during = SEEN_DURING_RUN.pop()
        assert stored and during.run_requests == [] and during.cursor == skipped.cursor  # run unfinished: not yet
        after = _tick(instance, skipped.cursor)
        assert [r.run_key for r in after.run_requests] == [run_key_for(version)]
        assert int(after.cursor) > int(skipped.cursor)


def test_a_failed_warn_check_does_not_stop_the_version_from_trading(research_dir):
    symbols = universe_symbols(research_dir, 4)
    with dg.instance_for_test() as instance:
        warned = _allocate(instance, research_dir, "2024-06-27", {s: 0.08 for s in symbols},
                           checks=(weights_within_budget, relaxed_cap_warning))
        blocked = _allocate(instance, research_dir, "2024-06-28", {s: 0.3 for s in symbols},
                            checks=(weights_within_budget, relaxed_cap_warning))
        keys = [r.run_key for r in _tick(instance).run_requests]
    assert keys == [run_key_for(warned)] and run_key_for(blocked) not in keys
