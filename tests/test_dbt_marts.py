"""The dbt marts (dbt/, assets/marts.py) built by the real dbt CLI into a temporary DuckDB.

One Dagster run builds every model over the data directory of tests/marts_support.py; the marts
are then compared with pandas computed from the stored tables.
"""

from __future__ import annotations

import json
import shutil

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines import load
from alphatwin_pipelines.schema import frame_to_arrow
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import (ALLOCATIONS, OPTIMISED, QUARANTINED, RAW, SCANNER, STRATEGY_RETURNS,
                                        UNIVERSE, VALIDATED, VALIDATION)
from tests.marts_support import DBT_DIR, IDS, MARTS, REPO_ROOT, build_marts, ensure_manifest, planted  # noqa: F401

pytestmark = [
    pytest.mark.filterwarnings("ignore::dagster.BetaWarning"),
    pytest.mark.filterwarnings("ignore:sqlglotrs is deprecated:DeprecationWarning"),  # imported by dagster-dbt
    pytest.mark.xdist_group("dbt_marts"),
]


@pytest.fixture(scope="module")
def marts_dir(planted) -> Path:
    return planted[0]


@pytest.fixture(scope="module")
def built(marts_dir, tmp_path_factory):
    """One Dagster run of every dbt model, with its dbt artifacts kept out of the repository."""
    return build_marts(marts_dir, tmp_path_factory.mktemp("dbt_target"))


@pytest.fixture(scope="module")
def db(built, marts_dir):
    connection = duckdb.connect(str(marts_dir / "marts.duckdb"), read_only=True)
    yield connection
    connection.close()


def _mart(db, name: str) -> pd.DataFrame:
    return db.sql(f"select * from {name}").df()


# -- the Dagster run ---------------------------------------------------------------------------
def test_materialize_builds_every_model_and_reports_every_dbt_test_as_a_check(built):
    result, run_results = built
    assert result.success
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert set(MARTS) <= materialized and "stg_cleaned_ohlcv" in materialized
    manifest = json.loads((DBT_DIR / "target" / "manifest.json").read_text())
    data_tests = {n["name"] for k, n in manifest["nodes"].items() if k.startswith("test.")}
    evaluations = result.get_asset_check_evaluations()
    assert {e.check_name for e in evaluations} == data_tests
    assert all(e.passed for e in evaluations)
    # Checks sit on the model they test: the singular conservation test on the sector mart.
    by_name = {e.check_name: e.asset_key.path[-1] for e in evaluations}
    assert by_name["assert_sector_exposure_conserves_symbol_weights"] == "mart_portfolio_sector_exposure"
    units = [r for r in run_results["results"] if r["unique_id"].startswith("unit_test.")]
    assert len(units) == 6 and {r["status"] for r in units} == {"pass"}


# -- the marts against pandas -------------------------------------------------------------------
def test_daily_returns_are_pct_changes_of_adjusted_closes(db, marts_dir):
    mart = _mart(db, "mart_daily_returns").astype({"date": "datetime64[ns]", "symbol": "string"})
    mart = mart[["symbol", "date", "previous_close", "price_factor", "daily_return"]]
    bars = load("cleaned_ohlcv", data_dir=marts_dir).sort_values(["symbol", "date"])
    bars["expected"] = bars.groupby("symbol")["adj_close"].pct_change()
    joined = bars.merge(mart, on=["symbol", "date"], how="outer", validate="one_to_one", indicator=True)
    assert (joined["_merge"] == "both").all()
    np.testing.assert_allclose(joined["daily_return"].astype(float), joined["expected"].astype(float), rtol=1e-12, atol=1e-15)
    # The split day is where adjusting matters: unadjusted closes would show a ~50% drop.
    split = joined[joined["price_factor"] == 0.5]
    assert len(split) >= 1
    raw_change = split["close"] / split["previous_close"] - 1
    assert (raw_change < -0.4).all() and (split["daily_return"].abs() < 0.2).all()


def test_quality_summary_counts_every_rejected_and_flagged_row(db, marts_dir, planted):
    store = TableStore(marts_dir)
    quarantined = store.read_partitions(QUARANTINED)
    validated = store.read_partitions(VALIDATED)
    rows_in = store.read_partitions(RAW).groupby("date").size()

    quarantined["session"] = pd.to_datetime(quarantined["partition"])
    validated["session"] = validated["date"]

    def per_rule(frame, column):
        listed = frame[frame[column].fillna("") != ""]
        hits = listed.assign(rule_id=listed[column].str.split(",")).explode("rule_id")
        return hits.groupby(["session", "rule_id"]).agg(affected_rows=("raw_row", "nunique"),
                                                        affected_symbols=("symbol", "nunique"))

    errors = per_rule(quarantined, "rule_id").assign(action="quarantined")
    columns = ["session", "raw_row", "symbol", "flags"]
    warnings = per_rule(pd.concat([validated[columns], quarantined[columns]]), "flags").assign(action="flagged")
    expected = pd.concat([errors, warnings]).reset_index()
    expected["rows_in"] = rows_in.reindex(expected["session"]).to_numpy()

    mart = _mart(db, "mart_quality_summary").astype({"session": "datetime64[ns]"})
    keys = ["session", "rule_id", "action"]
    merged = expected.merge(mart, on=keys, how="outer", validate="one_to_one", indicator=True, suffixes=("", "_mart"))
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"][keys]
    for column in ("affected_rows", "affected_symbols", "rows_in"):
        assert (merged[column] == merged[f"{column}_mart"]).all(), column
    np.testing.assert_allclose(merged["affected_share"], merged["affected_rows"] / merged["rows_in"])

    for (symbol, session), rule in planted[1].items():
        row = mart[(mart["session"] == session) & (mart["rule_id"] == rule)]
        assert len(row) == 1 and row["severity"].item() == "ERROR" and row["affected_rows"].item() >= 1
        assert symbol in set(quarantined.loc[quarantined["session"] == session, "symbol"])


def test_scanner_leaderboard_ranks_symbols_like_pandas(db, marts_dir):
    hits = TableStore(marts_dir).read_partitions(SCANNER)
    grouped = hits.groupby("symbol")
    expected = pd.DataFrame({
        "hits": grouped.size(),
        "top10_sessions": hits[hits["rank_overall"] <= 10].groupby("symbol")["date"].nunique(),
        "mean_score": grouped["score"].mean(),
        "long_hits": hits[hits["direction"] > 0].groupby("symbol").size(),
    }).fillna(0).reset_index()
    expected = expected.sort_values(["top10_sessions", "hits", "mean_score", "symbol"], ascending=[False, False, False, True])
    mart = _mart(db, "mart_scanner_leaderboard").sort_values("leaderboard_rank")
    assert mart["symbol"].tolist() == expected["symbol"].tolist()
    assert mart["leaderboard_rank"].tolist() == list(range(1, len(mart) + 1))
    assert mart["hits"].tolist() == expected["hits"].astype(int).tolist()
    assert mart["long_hits"].tolist() == expected["long_hits"].astype(int).tolist()
    np.testing.assert_allclose(mart["mean_score"], expected["mean_score"], rtol=1e-12)


def test_strategy_scorecard_combines_verdicts_streams_and_weights(db, marts_dir):
    store = TableStore(marts_dir)
    returns = store.read_table(STRATEGY_RETURNS)
    mart = _mart(db, "mart_strategy_scorecard").set_index("strategy_id")
    # Passed first, then deflated Sharpe (NaN last): b2 (passed), a1 (dsr 0.40), c3 (dsr NaN).
    assert mart.sort_values("scorecard_rank").index.tolist() == [IDS[1], IDS[0], IDS[2]]
    for strategy, stream in returns.groupby("strategy_id"):
        r = stream["return"].to_numpy()
        assert mart.loc[strategy, "oos_days"] == len(r)
        assert mart.loc[strategy, "oos_total_return"] == pytest.approx(np.prod(1 + r) - 1, rel=1e-12)
        assert mart.loc[strategy, "realised_sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * np.sqrt(252), rel=1e-9)
    assert mart.loc[IDS[2], "oos_days"] == 0 and pd.isna(mart.loc[IDS[2], "dsr"])  # NaN metrics read as NULL
    assert mart["portfolio_weight"].to_dict() == {IDS[0]: 0.4, IDS[1]: 0.6, IDS[2]: 0.0}
    assert mart.loc[IDS[0], "sharpe_decay"] == pytest.approx(1.4 - 0.2)


def test_sector_exposure_sums_symbol_weights_by_universe_sector(db, marts_dir):
    store = TableStore(marts_dir)
    allocation = store.read_table(ALLOCATIONS)
    symbols = allocation[allocation["kind"] == "symbol"].merge(
        store.read_table(UNIVERSE)[["symbol", "sector"]].rename(columns={"symbol": "name", "sector": "universe_sector"}),
        on="name", how="left")
    symbols["sector"] = symbols["universe_sector"].fillna(symbols["sector"]).fillna("Unclassified")
    expected = symbols.groupby("sector").agg(net_weight=("weight", "sum"), gross_weight=("weight", lambda w: w.abs().sum()),
                                             symbols=("name", "size"))
    mart = _mart(db, "mart_portfolio_sector_exposure").set_index("sector").sort_index()
    expected = expected.sort_index()
    assert mart.index.tolist() == expected.index.tolist()
    assert "Unclassified" in mart.index and "Not The Universe's" not in mart.index
    np.testing.assert_allclose(mart["net_weight"], expected["net_weight"], rtol=1e-12)
    np.testing.assert_allclose(mart["gross_weight"], expected["gross_weight"], rtol=1e-12)
    assert mart["symbols"].tolist() == expected["symbols"].tolist()
    assert mart["share_of_gross"].sum() == pytest.approx(1.0)


# -- a broken contract stops the build -----------------------------------------------------------
def test_a_failing_data_test_fails_the_build_and_skips_the_marts_below_it(marts_dir, tmp_path):
    ensure_manifest()
    from assets.resources import dbt_resource

    data = tmp_path / "data"
    data.mkdir()
    for table in (UNIVERSE, OPTIMISED, VALIDATION, ALLOCATIONS):
        shutil.copy2(marts_dir / f"{table}.parquet", data / f"{table}.parquet")
    store = TableStore(data)
    allocation = store.read_table(ALLOCATIONS)
    allocation.loc[allocation.index[-1], "kind"] = "etf"  # not a kind the contract knows
    store.write_table(ALLOCATIONS, frame_to_arrow(allocation))

    selection = "stg_universe stg_optimised_strategies stg_validation_reports stg_portfolio_allocations mart_portfolio_sector_exposure"
    invocation = dbt_resource().cli(
        ["build", "--vars", json.dumps({"data_dir": str(data)}), "--select", selection,
         "--indirect-selection", "cautious"],  # only tests whose every parent is selected
        raise_on_error=False, target_path=tmp_path / "target").wait()
    assert not invocation.is_successful()
    status = {r["unique_id"].split(".")[2]: r["status"] for r in invocation.get_artifact("run_results.json")["results"]}
    assert status["accepted_values_stg_portfolio_allocations_kind__strategy__symbol__cash"] == "fail"
    assert status["mart_portfolio_sector_exposure"] == "skipped"
    assert status["stg_universe"] == "success"


# -- one lineage ---------------------------------------------------------------------------------
def test_marts_hang_off_the_pipeline_assets_in_one_graph(tmp_path, monkeypatch):
    ensure_manifest()
    from assets import cleaning, features, ingestion, quality, scanner
    from assets.marts import DUCKDB_POOL, MARTS_GROUP, marts
    from assets.resources import default_resources

    defs = dg.Definitions(assets=[*dg.load_assets_from_modules([ingestion, quality, cleaning, features, scanner]), marts],
                          resources=default_resources())
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    staging = graph.get(dg.AssetKey(["staging", "stg_cleaned_ohlcv"]))
    assert dg.AssetKey("cleaned_ohlcv") in staging.parent_keys
    assert graph.get(dg.AssetKey("cleaned_ohlcv")).partitions_def is not None and staging.partitions_def is None
    mapping = graph.get_partition_mapping(staging.key, dg.AssetKey("cleaned_ohlcv"))
    assert isinstance(mapping, dg.AllPartitionMapping)
    universe = graph.get(dg.AssetKey(["staging", "stg_universe"]))
    assert dg.AssetKey("universe") in universe.parent_keys
    assert {graph.get(k).group_name for k in marts.keys} == {MARTS_GROUP}
    assert marts.op.pool == DUCKDB_POOL
    # The instance config `make` installs gives that pool one slot: one DuckDB writer at a time.
    shutil.copy(REPO_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # the storage's base_dir in that config
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.event_log_storage.get_concurrency_info(DUCKDB_POOL).limit == 1
