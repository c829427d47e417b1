"""The factor report's pictures (PNG, matplotlib Agg) and its one-file HTML page.

PNG bytes carry no timestamp, so the same report gives the same files; the page embeds the
PNGs as data URIs (it opens offline and can be archived as one file).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import pandas as pd

from alphatwin_pipelines.alpha.factor_report import FactorReport
from alphatwin_pipelines.atomic import atomic_write_bytes
from alphatwin_pipelines.objectstore import is_remote
from alphatwin_pipelines.reports.html import _STYLE, table

#: Rolling window (sessions) of the daily IC line: a single day's IC is mostly noise.
IC_SMOOTHING = 21


def _png(figure) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=80, metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_ic(report: FactorReport) -> bytes:
    """Daily rank IC per horizon, smoothed, and its cumulative sum."""
    plt = _plt()
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for h, part in report.daily.groupby("horizon"):
        series = part.set_index("date")["rank_ic"]
        top.plot(series.index, series.rolling(IC_SMOOTHING, min_periods=1).mean().to_numpy(), label=f"h={h}")
        bottom.plot(series.index, series.fillna(0).cumsum().to_numpy(), label=f"h={h}")
    top.axhline(0, color="grey", linewidth=0.8)
    top.set_title(f"rank IC, {IC_SMOOTHING}-session mean")
    bottom.set_title("cumulative rank IC")
    top.legend()
    return _png(figure)


def plot_quantiles(report: FactorReport) -> bytes:
    """Mean forward return per quantile, one group of bars per horizon (per session, comparable)."""
    plt = _plt()
    figure, axis = plt.subplots(figsize=(10, 4))
    horizons = sorted(report.quantile_returns["horizon"].unique())
    width = 0.8 / max(len(horizons), 1)
    for k, h in enumerate(horizons):
        part = report.quantile_returns[report.quantile_returns["horizon"] == h]
        axis.bar(part["quantile"].to_numpy() + (k - (len(horizons) - 1) / 2) * width,
                 part["mean_return"].to_numpy() / h * 1e4, width=width, label=f"h={h}")
    axis.axhline(0, color="grey", linewidth=0.8)
    axis.set_xlabel("quantile (1 = lowest score)")
    axis.set_ylabel("mean forward return per session (bp)")
    axis.legend()
    return _png(figure)


def plot_decay(report: FactorReport) -> bytes:
    """Mean rank IC of each horizon's score against every label horizon."""
    plt = _plt()
    figure, axis = plt.subplots(figsize=(6, 4))
    for h, part in report.decay.groupby("horizon"):
        axis.plot(part["label_horizon"].to_numpy(), part["mean_rank_ic"].to_numpy(), marker="o", label=f"score h={h}")
    axis.axhline(0, color="grey", linewidth=0.8)
    axis.set_xlabel("label horizon (sessions)")
    axis.set_ylabel("mean rank IC")
    axis.legend()
    return _png(figure)


def plot_groups(report: FactorReport) -> bytes:
    """Mean rank IC by year and by sector (first horizon)."""
    plt = _plt()
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    h = int(report.summary["horizon"].min())
    years = report.by_year[report.by_year["horizon"] == h]
    left.bar(years["year"].astype(str).to_numpy(), years["mean_rank_ic"].to_numpy())
    left.set_title(f"mean rank IC by year (h={h})")
    left.tick_params(axis="x", rotation=90)
    sectors = report.by_sector[report.by_sector["horizon"] == h].sort_values("mean_rank_ic")
    right.barh(sectors["sector"].to_numpy(), sectors["mean_rank_ic"].to_numpy())
    right.set_title(f"mean rank IC by sector (h={h})")
    return _png(figure)


PLOTS = {"ic": plot_ic, "quantiles": plot_quantiles, "decay": plot_decay, "groups": plot_groups}


def render_plots(report: FactorReport) -> dict[str, bytes]:
    return {name: draw(report) for name, draw in PLOTS.items()}


def report_html(report: FactorReport, plots: dict[str, bytes]) -> str:
    images = "".join(f'<h3>{html.escape(name)}</h3><img alt="{html.escape(name)}" '
                     f'src="data:image/png;base64,{base64.b64encode(png).decode()}">' for name, png in plots.items())
    quantiles = report.quantile_returns.pivot(index="quantile", columns="horizon", values="mean_return")
    quantiles.columns = [f"h={h}" for h in quantiles.columns]
    sections = [
        ("Summary per horizon", report.summary),
        ("Mean forward return per quantile (over the horizon)", quantiles.reset_index()),
        ("Decay: each horizon's score against every label horizon", report.decay),
        ("By year", report.by_year),
        ("By sector", report.by_sector),
    ]
    body = "".join(f"<h2>{html.escape(title)}</h2>{table(frame)}" for title, frame in sections)
    notes = "".join(f"<p>{html.escape(n)}</p>" for n in report.notes)
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Alpha factor report "
            f"{report.as_of:%Y-%m-%d}</title><style>{_STYLE}</style></head><body>"
            f"<h1>Alpha factor report as of {report.as_of:%Y-%m-%d}</h1>"
            f"<p>Labels used: only those available by {report.as_of:%Y-%m-%d}. IC: Pearson, rank IC: Spearman, "
            f"per date across symbols (dates with fewer than {report.settings.min_names} names skipped); "
            f"ICIR: mean / std of the daily series (not annualised); {report.settings.quantiles} quantiles.</p>"
            f"{notes}{body}<h2>Plots</h2>{images}</body></html>")


def write_report_files(report: FactorReport, folder) -> dict[str, Path]:
    """PNG files and ``report.html`` under ``folder`` (a local ``Path`` or an object-store ``UPath``),
    each replaced atomically; their paths."""
    plots = render_plots(report)
    folder = folder if is_remote(folder) else Path(folder)
    paths = {}
    for name, png in plots.items():
        path = folder / f"{name}.png"
        atomic_write_bytes(path, lambda tmp, data=png: Path(tmp).write_bytes(data))
        paths[name] = path
    page = report_html(report, plots).encode("utf-8")
    paths["html"] = folder / "report.html"
    atomic_write_bytes(paths["html"], lambda tmp: Path(tmp).write_bytes(page))
    return paths
