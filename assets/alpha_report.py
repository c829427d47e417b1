"""Alpha factor report: how well ``alpha_predictions`` ranked the forward returns (``alpha_labels``).

IC and rank IC per day and horizon, their means and ICIR, quantile returns, the top-minus-bottom
spread, turnover, decay across horizons, by year and by sector; PNG plots in the metadata and
the HTML page's path. Only labels available by the report's as-of session are used.
"""

import base64

import dagster as dg

from alphatwin_pipelines.alpha.factor_report import FactorReportSettings
from alphatwin_pipelines.profiling import measure
from alphatwin_pipelines.reporting import markdown_table
from alphatwin_pipelines.tables import ALPHA_FACTOR_REPORT, ALPHA_LABELS, ALPHA_PREDICTIONS, UNIVERSE
from assets.config import config_from_dataclass, dataclass_from_config
from assets.locations import location
from assets.resources import StorageResource


class AlphaReportConfig(config_from_dataclass(FactorReportSettings)):
    """Quantiles, the minimum names per date, and the as-of session (empty: the latest prediction)."""


def _image(name: str, png: bytes) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"![{name}](data:image/png;base64,{base64.b64encode(png).decode()})")


@dg.asset(
    name=ALPHA_FACTOR_REPORT, deps=[ALPHA_PREDICTIONS, ALPHA_LABELS, UNIVERSE], group_name="alpha",
    kinds={"parquet", "html", "png"},
    description="Factor analysis of the alpha predictions: IC, rank IC, ICIR, quantile returns, spread, "
                "turnover, decay, by year and sector, as of one session (labels known by then only).",
)
def alpha_factor_report(context: dg.AssetExecutionContext, config: AlphaReportConfig, storage: StorageResource):
    from alphatwin_pipelines.stages.alpha_report import build_alpha_factor_report

    store = storage.store()
    with measure() as cost:
        try:
            run = build_alpha_factor_report(store, dataclass_from_config(FactorReportSettings, config))
        except (FileNotFoundError, ValueError) as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
    report = run.report
    for note in report.notes:
        context.log.warning(note)
    summary = report.summary.round(4)
    first = summary.iloc[0]
    plots = {f"plot_{name}": _image(name, path.read_bytes()) for name, path in run.files.items() if name != "html"}
    return dg.MaterializeResult(metadata={
        "as_of": f"{report.as_of:%Y-%m-%d}", "rows": run.rows,
        "horizons": [int(h) for h in summary["horizon"]],
        "mean_rank_ic": float(first["mean_rank_ic"]), "rank_icir": float(first["rank_icir"]),
        "summary": dg.MetadataValue.md(markdown_table(summary)),
        "decay": dg.MetadataValue.md(markdown_table(report.decay.round(4))),
        "by_year": dg.MetadataValue.md(markdown_table(report.by_year.round(4))),
        "by_sector": dg.MetadataValue.md(markdown_table(report.by_sector.round(4))),
        "report_html": location(run.files["html"]),
        **plots, **cost.as_metadata()})
