"""Strategy optimisation: Optuna studies per family x complexity level on the scanner's shortlist."""

import dataclasses

import dagster as dg

from alphatwin_pipelines.cluster import n_workers
from alphatwin_pipelines.partition_keys import session_key
from alphatwin_pipelines.profiling import measure
from alphatwin_pipelines.reporting import markdown_table
from alphatwin_pipelines.stages.optimisation import OptimisationConfig, study_plan
from alphatwin_pipelines.tables import CLEANED, FEATURES, OPTIMISATION_TRIALS, OPTIMISED, SCANNER
from assets.config import config_from_dataclass, dataclass_from_config
from assets.locations import location
from assets.resources import DaskResource, OptunaResource, StorageResource

CHECK_ONE_ROW_PER_STUDY = "one_row_per_family_and_level"
CURVE_PNG = "reports/sharpe_vs_complexity.png"


class OptimisationRunConfig(config_from_dataclass(OptimisationConfig, exclude=("warmup_sessions", "costs"))):
    """Study budget and shortlist (the fields of ``OptimisationConfig``). The defaults are the research
    scale: 500 trials per family x level, asked and evaluated ``batch_size`` at a time, on the 100
    best-ranked symbols over up to the last 10 years. `make run` passes a demo budget
    (config/demo_research.yaml: 8 trials, 25 symbols, 2 years). Studies resume, so a bigger budget
    only runs the missing trials."""


@dg.asset(
    name=OPTIMISED, deps=[CLEANED, FEATURES, SCANNER], group_name="strategies", kinds={"optuna", "parquet"},
    description="Best parameters per strategy family x complexity level (Optuna TPE, median pruning) with in-sample "
                f"metrics and a reproducibility record; every trial goes to the {OPTIMISATION_TRIALS} table beside it.",
    check_specs=[dg.AssetCheckSpec(CHECK_ONE_ROW_PER_STUDY, asset=OPTIMISED,
                                   description="Exactly one row per configured family x level, each with a finite in-sample Sharpe.")],
)
def optimised_strategies(context: dg.AssetExecutionContext, config: OptimisationRunConfig, storage: StorageResource,
                         optuna: OptunaResource, dask: DaskResource):
    """Studies persist in the Optuna storage and resume; the tables are rebuilt from them every run.
    With ``ALPHATWIN_DASK_SCHEDULER`` set, each study is a task on that cluster."""
    from alphatwin_pipelines.optimise.plot import png_markdown, render_sharpe_vs_complexity
    from alphatwin_pipelines.stages.optimisation import optimise_strategies

    store = storage.store()
    try:
        settings = dataclass_from_config(OptimisationConfig, config)
        if not settings.segment_symbols:  # an empty list in the launchpad means no symbol filter
            settings = dataclasses.replace(settings, segment_symbols=None)
        with measure() as cost, dask.cluster_client() as client:
            workers = n_workers(client) if client is not None else 0
            report = optimise_strategies(store, settings, optuna.url(storage), logger=context.log, client=client)
    except (FileNotFoundError, ValueError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    table = report.strategies
    png = render_sharpe_vs_complexity(report.curve(), store.data_dir / CURVE_PNG)
    best = table[["family", "level", "complexity", "is_sharpe", "is_trades", "n_trials", "n_pruned", "spec_json"]]
    context.log.info(f"{len(table)} studies, {report.trials_run} new trials in {report.seconds:.1f} s")
    yield dg.MaterializeResult(metadata={
        "studies": len(table),
        "n_trials_total": int(table["n_trials"].sum()),
        "trials_run": report.trials_run,
        "scanner_partition": session_key(report.end),
        "window": f"{report.start:%Y-%m-%d}..{report.end:%Y-%m-%d}",
        "shortlist": dg.MetadataValue.json(report.shortlist.symbols),
        "shortlist_filled_by_liquidity": dg.MetadataValue.json(report.shortlist.filled),
        "optuna_storage": optuna.url(storage).split(":", 1)[0],  # the scheme only: the URL may hold a password
        "dask_workers": workers,
        "best_per_family_and_level": dg.MetadataValue.md(markdown_table(best.round(3), limit=100)),
        "sharpe_vs_complexity": location(png),
        "sharpe_vs_complexity_plot": dg.MetadataValue.md(png_markdown(png)),
        f"{OPTIMISATION_TRIALS}_by_state": dg.MetadataValue.json(
            {state: int(n) for state, n in report.trials["state"].value_counts().sort_index().items()}),
        **cost.as_metadata(),
    })
    expected = set(study_plan(settings))
    got = list(zip(table["family"], table["level"].astype(int)))
    finite = bool(table["is_sharpe"].notna().all())
    yield dg.AssetCheckResult(check_name=CHECK_ONE_ROW_PER_STUDY, passed=sorted(got) == sorted(expected) and finite,
                              metadata={"rows": len(got), "expected": len(expected), "finite_sharpe": finite})
