"""Strategy cards: one card per validated strategy (rules, gates, entry/exit chart, code exports).

Each card's Markdown, with its chart inline, is in this asset's metadata; the files live in
``<data_dir>/cards/<strategy_id>/<version>/`` and the card is also added to the strategy's
HTML report. A strategy whose spec cannot be read or exported still gets its card; the
``card_exports`` check (a warning, not blocking) fails on such bad specs and names each strategy
and target. Valid specs a target cannot express (breadth or index regimes in Pine Script) are
listed in its metadata without failing it.
"""

import dagster as dg
import pandas as pd

from alphatwin_pipelines.profiling import measure
from alphatwin_pipelines.reporting import markdown_table
from alphatwin_pipelines.tables import CLEANED, STRATEGY_CARDS, STRATEGY_RETURNS, VALIDATION
from assets.resources import StorageResource
from assets.locations import location

CARD_EXPORTS_CHECK = "card_exports"
#: Cards shown in full (with their chart) in the metadata, those that passed first; the table lists every card.
MAX_CARDS_IN_METADATA = 20


@dg.asset(
    name=STRATEGY_CARDS, deps=[VALIDATION, STRATEGY_RETURNS, CLEANED], group_name="strategies",
    kinds={"json", "png", "python"},
    description="Per validated strategy: rules in plain language, gate sentences, an entry/exit chart and "
                "exported code (Python backtest, Pine Script v5, Alpaca paper orders), content-hashed per version.",
    check_specs=[dg.AssetCheckSpec(CARD_EXPORTS_CHECK, asset=STRATEGY_CARDS,
                                   description="Every strategy's spec is valid and every target that can "
                                               "express it was written.")],
)
def strategy_cards(context: dg.AssetExecutionContext, storage: StorageResource):
    from alphatwin_pipelines.stages.cards import build_strategy_cards

    store = storage.store()
    with measure() as cost:
        try:
            run = build_strategy_cards(store)
        except (FileNotFoundError, ValueError) as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
    for error in run.errors:
        context.log.warning(error)
    for limit in run.unsupported:
        context.log.info(limit)
    table = run.table.assign(strategy_id=run.table["strategy_id"].str[:12])[
        ["strategy_id", "family", "level", "passed", "version", "card_dir"]]
    cards = {f"card {c.data['family']} L{c.data['level']} {c.strategy_id[:12]}": dg.MetadataValue.md(c.markdown(True))
             for c in sorted(run.cards, key=lambda c: not c.passed)[:MAX_CARDS_IN_METADATA]}  # passed first
    yield dg.MaterializeResult(metadata={
        "cards": len(run.cards), "new_versions": run.created, "export_errors": len(run.errors),
        "not_exported": len(run.unsupported),
        "index": dg.MetadataValue.md(markdown_table(table, limit=100)),
        "cards_dir": location(store.data_dir / "cards"),
        **cards, **cost.as_metadata()})
    failures = pd.DataFrame({"problem": run.errors})
    limits = pd.DataFrame({"not exported": run.unsupported})
    yield dg.AssetCheckResult(check_name=CARD_EXPORTS_CHECK, passed=not run.errors,
                              severity=dg.AssetCheckSeverity.WARN,
                              metadata={"problems": len(run.errors), "not_exported": len(run.unsupported),
                                        "details": dg.MetadataValue.md(markdown_table(failures, limit=100)),
                                        "target_limits": dg.MetadataValue.md(markdown_table(limits, limit=100))})
