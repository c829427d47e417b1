"""The whole asset graph on an object-store data directory: ``ALPHATWIN_DATA_DIR=s3://<bucket>/data`` on
moto's server on 127.0.0.1, materialised in process as `make run` does (the universe, the daily assets
over a partition range, the research assets, the per-symbol index, the alpha models and predictions,
and the alpha factor report; the dbt marts on the store are tested in test_dbt_object_storage.py).

Every table, report page, card, model artifact and allocation ends up as objects in the bucket; nothing
is written to the repository's ``data/`` or the working directory (only to the local state directory,
``ALPHATWIN_STATE_DIR``); ``load`` reads the tables back from the store; a re-run of one partition
rewrites no object (the ETags are unchanged).
"""

from __future__ import annotations

import os
import time

import dagster as dg
import pandas as pd
import pytest

from alphatwin_pipelines import inventory as inventory_module, load
from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.data_dir import DEFAULT_DATA_DIR, resolve_data_dir
from alphatwin_pipelines.inventory import inventory
from alphatwin_pipelines.tables import ALLOCATIONS, ALPHA_MODELS, CLEANED, OPTIMISED, RAW, VALIDATION
from assets import (
    alpha_labels, alpha_models, alpha_predictions, alpha_report, cards, cleaning, features, ingestion, portfolio, quality,
    scanner, strategies, symbol_index, validation,
)
from assets.resources import (
    BrokerResource, DaskResource, MarketDataResource, MlflowResource, OptunaResource, StorageResource,
)
from jobs.execution import EXECUTE_OP, paper_execution_job
from tests.s3_support import make_bucket, s3_server  # noqa: F401 (fixture)

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::dagster.BetaWarning")]

START, END = "2024-07-01", "2024-12-31"
CUTOFF = "2024-12-02"  # the models' cutoff: predictions from it on can be scored against later labels
DAILY = ["raw_ohlcv", "validated_ohlcv", "quarantined_ohlcv", "adjustment_factors", "cleaned_ohlcv", "features",
         "scanner_results", "symbol_context", "sector_rotation", "top_pairs", "alpha_labels"]
RESEARCH = ["optimised_strategies", "validation_reports", "strategy_returns", "strategy_positions", "strategy_cards",
            "portfolio_allocations", "symbol_history_index"]
# A smaller budget than config/demo_research.yaml: half a year of 12 symbols, three families (every
# object is a request to the store: the session count sets the test's time).
RESEARCH_CONFIG = {"ops": {
    "optimised_strategies": {"config": {"n_trials": 4, "batch_size": 4, "shortlist_size": 10, "train_years": 0.4,
                                        "families": ["ma_cross", "rsi_reversion", "xs_momentum"], "levels": [0]}},
    "validation_reports": {"config": {"train_sessions": 50, "test_sessions": 25, "trials_per_window": 2,
                                      "min_dsr": 0.0, "min_information_ratio": -1000.0}},
    "portfolio_allocations": {"config": {"min_history": 20}},
}}
TRAINING = {"ops": {"alpha_models": {"config": {"horizons": [1, 5], "train_sessions": 40, "n_trials": 2,
                                                "n_estimators": 10, "as_of": CUTOFF}}}}
ASSETS = dg.load_assets_from_modules([ingestion, quality, cleaning, features, scanner, alpha_labels, alpha_models,
                                      alpha_predictions, alpha_report, strategies, validation, cards, portfolio,
                                      symbol_index])


def _local_files(folder) -> dict:
    """Path -> mtime of every file under ``folder``, except numba's compiled kernels: the test session
    keeps them in the repository's data/ (conftest configures the cache before any data directory is set)."""
    if not os.path.isdir(folder):
        return {}
    return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns for d, _, fs in os.walk(folder) for f in fs
            if ".numba_cache" not in os.path.relpath(d, folder).split(os.sep)}


@pytest.fixture(scope="module")
def graph(s3_server, tmp_path_factory):  # noqa: F811 (fixture)
    """One bucket for the module, the graph materialised into it once (the tests read what it left)."""
    state, cwd = tmp_path_factory.mktemp("state"), tmp_path_factory.mktemp("cwd")
    repo_data_before = _local_files(DEFAULT_DATA_DIR)
    with pytest.MonkeyPatch.context() as mp, dg.DagsterInstance.ephemeral() as instance:
        for name, value in s3_server.env().items():
            mp.setenv(name, value)
        url = f"s3://{make_bucket(s3_server)}/data"
        mp.setenv("ALPHATWIN_DATA_DIR", url)
        mp.setenv("ALPHATWIN_STATE_DIR", str(state))
        mp.delenv("MLFLOW_S3_ENDPOINT_URL", raising=False)
        mp.chdir(cwd)  # a path that loses its s3:// scheme would land here
        resources = {
            "storage": StorageResource(),
            "market_data": MarketDataResource(source="synthetic", synthetic_symbols=12, synthetic_defects="0"),
            "dask": DaskResource(n_workers=1), "optuna": OptunaResource(), "mlflow": MlflowResource(),
            "broker": BrokerResource(),
        }

        def run(selection, **kwargs):
            started = time.perf_counter()
            result = dg.materialize(ASSETS, selection=selection, resources=resources, instance=instance, **kwargs)
            assert result.success, selection
            print(f"materialised {selection} in {time.perf_counter() - started:.1f} s")
            return result

        run(["universe"])
        run(DAILY, tags={"dagster/asset_partition_range_start": START, "dagster/asset_partition_range_end": END})
        run(RESEARCH, run_config=RESEARCH_CONFIG)
        run(["alpha_models"], run_config=TRAINING)
        run(["alpha_predictions"], tags={"dagster/asset_partition_range_start": CUTOFF,
                                         "dagster/asset_partition_range_end": END})
        report = run(["alpha_factor_report"])
        yield dict(url=url, root=resolve_data_dir(url), state=state, cwd=cwd, run=run,
                   repo_data_before=repo_data_before, report=report)


def _objects(root) -> dict:
    """Key (relative to the data directory) -> ETag of every object under it."""
    found = root.fs.find(root.path, detail=True)
    return {key[len(root.path) + 1:]: info.get("ETag") for key, info in found.items()}


def test_every_artifact_is_an_object_in_the_bucket(graph):
    keys = set(_objects(graph["root"]))
    sessions = sessions_between(START, END)
    assert "universe.parquet" in keys
    for table in DAILY:
        stored = {k for k in keys if k.startswith(f"{table}/") and k.endswith(".parquet")}
        assert len(stored) == len(sessions), f"{table}: {len(stored)} session objects, expected {len(sessions)}"
    for table in (OPTIMISED, VALIDATION, "strategy_returns", "strategy_positions", "strategy_cards", ALLOCATIONS,
                  ALPHA_MODELS, "optimisation_trials"):
        assert f"{table}.parquet" in keys, table
    reports = load(VALIDATION)
    assert len(reports) > 0
    assert {path for path in reports["report_path"]} <= keys, "every validation page is an object"
    assert "reports/sharpe_vs_complexity.png" in keys and "reports/allocation.png" in keys
    cards_table = load("strategy_cards")
    for card_dir in cards_table["card_dir"]:
        card_files = {k for k in keys if k.startswith(card_dir.rstrip("/") + "/")}
        assert {"card.json", "card.md"} <= {k.rsplit("/", 1)[-1] for k in card_files}, card_dir
    allocation = load(ALLOCATIONS)["allocation_version"].iloc[0]
    assert f"{ALLOCATIONS}/{allocation}.parquet" in keys
    models = load(ALPHA_MODELS)
    assert len(models) == 2 and all(path in keys for path in models["artifact"])
    assert any(k.startswith("mlruns/") and k.endswith("/model/" + p.rsplit("/", 1)[-1])
               for k in keys for p in models["artifact"]), "MLflow's artifacts are in the bucket"
    assert any(k.startswith("reports/alpha_factor/") and k.endswith("report.html") for k in keys)
    assert {k for k in keys if k.startswith("cleaned_ohlcv/_by_symbol/")}, "the per-symbol index is in the bucket"
    assert not [k for k in keys if k.rsplit("/", 1)[-1].startswith(".") and k.endswith(".tmp")], "no temporaries"


def test_nothing_is_written_to_a_local_data_directory(graph):
    assert _local_files(graph["cwd"]) == {}, "a data path lost its s3:// scheme and was written locally"
    assert _local_files(DEFAULT_DATA_DIR) == graph["repo_data_before"], "the repository's data/ was written"
    # only what belongs on local disk: SQLite databases (with their WAL files), compiled kernels, GX docs
    local = {os.path.relpath(p, graph["state"]).split(os.sep)[0] for p in _local_files(graph["state"])}
    databases = {"optuna.db", "mlflow.db", "paper_ledger.db"}
    assert {name.split("-")[0] for name in local} <= databases | {".numba_cache", "gx_docs"}, local
    assert {"optuna.db", "mlflow.db", "gx_docs"} <= local


def test_load_reads_the_tables_back_from_the_store(graph):
    cleaned = load(CLEANED, start=END, end=END)
    assert set(cleaned["date"].dt.strftime("%Y-%m-%d")) == {END}
    assert set(cleaned["symbol"]) == set(load(RAW, start=END, end=END)["symbol"]) and len(cleaned) > 0
    assert len(load(OPTIMISED)) == 3
    some = sorted(cleaned["symbol"])[:2]
    everything = load(CLEANED)
    wanted = everything[everything["symbol"].isin(some)].sort_values(["date", "symbol"]).reset_index(drop=True)
    history = load(CLEANED, symbols=some).sort_values(["date", "symbol"]).reset_index(drop=True)  # the index
    pd.testing.assert_frame_equal(history[wanted.columns], wanted)
    with pytest.raises(KeyError, match="stored tables: .*cleaned_ohlcv"):
        load("no_such_table")


def test_the_inventory_lists_what_is_in_the_bucket(graph, capsys, monkeypatch):
    seen = []  # what make run's last step (inventory's main) lists, checked row by row
    monkeypatch.setattr(inventory_module, "inventory", lambda store: seen.append(inventory(store)) or seen[-1])
    assert inventory_module.main([]) == 0
    assert f"Tables under {graph['url']}" in capsys.readouterr().out
    listed = {row["table"]: row for row in seen[0]}
    assert {*DAILY, "universe", OPTIMISED, VALIDATION, ALLOCATIONS, ALPHA_MODELS} <= set(listed)
    assert listed[CLEANED]["rows"] == len(load(CLEANED)) and listed[CLEANED]["index"]["serving"] > 0
    assert "immutable version" in listed[ALLOCATIONS]["span"]


def test_the_paper_execution_trades_the_allocation_version_read_from_the_store(graph):
    version = load(ALLOCATIONS)["allocation_version"].iloc[0]
    result = paper_execution_job.execute_in_process(
        run_config={"ops": {EXECUTE_OP: {"config": {"allocation_version": version}}}},
        resources={"storage": StorageResource(), "broker": BrokerResource()})
    assert result.success
    summary = result.output_for_node(EXECUTE_OP)
    assert summary["allocation_version"] == version and summary["equity"] > 0
    assert (graph["state"] / "paper_ledger.db").is_file(), "the ledger is local state, the allocation an object"


def test_a_rerun_of_one_partition_and_of_the_research_rewrites_no_object(graph):
    before = _objects(graph["root"])
    graph["run"](DAILY, partition_key=END)
    graph["run"](["alpha_predictions"], partition_key=END)
    graph["run"](["strategy_cards", "portfolio_allocations"], run_config={"ops": {
        "portfolio_allocations": RESEARCH_CONFIG["ops"]["portfolio_allocations"]}})
    after = _objects(graph["root"])
    changed = sorted(k for k in after if before.get(k) != after[k])
    assert changed == [], f"re-runs rewrote or added {changed[:10]}"
