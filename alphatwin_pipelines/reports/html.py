"""One self-contained HTML page per validated strategy: charts as inline SVG, tables, plain English.

No external URL is referenced (no CDN, no fonts, no images by link), so the page opens offline
and can be archived as one file. The bytes are deterministic for the same inputs: matplotlib's
SVG ids come from a fixed ``svg.hashsalt``, its metadata block (dates, RDF) is removed, text stays SVG
``<text>`` (drawn by the viewer's sans-serif font; no font file is embedded or linked) and every
number in the tables is formatted explicitly.
"""

from __future__ import annotations

import html
import io
import math
import re

import numpy as np
import pandas as pd

from alphatwin_pipelines.reports.gates import GATES
from alphatwin_pipelines.stats import drawdown, explain

_STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
          "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
          "text-align:right}th{background:#f2f2f2}td.l,th.l{text-align:left}.pass{color:#1a7f37}"
          ".fail{color:#b42318}")


def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"
    if isinstance(value, pd.Timestamp):
        return f"{value:%Y-%m-%d}"
    return str(value)


def table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False, name=None):
        cells = "".join(f'<td class="l">{html.escape(_fmt(v))}</td>' if isinstance(v, str)
                        else f"<td>{html.escape(_fmt(v))}</td>" for v in row)
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _svg(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buf.getvalue()
    return re.sub(r"\s*<metadata>.*?</metadata>", "", text[text.index("<svg"):], flags=re.S)


def charts(oos: pd.Series, bench: pd.DataFrame) -> str:
    """Equity vs benchmarks, drawdown and the monthly-returns heatmap, as one inline SVG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"svg.hashsalt": "alphatwin", "svg.fonttype": "none", "font.size": 8}):
        monthly = (1 + oos.fillna(0.0)).groupby([oos.index.year, oos.index.month]).prod() - 1
        grid = monthly.unstack().reindex(columns=range(1, 13))
        fig, (eq_ax, dd_ax, heat_ax) = plt.subplots(
            3, 1, figsize=(10, 7.5 + 0.3 * len(grid)), height_ratios=[3, 1.6, 0.8 + 0.35 * len(grid)],
            gridspec_kw={"hspace": 0.45, "left": 0.06, "right": 0.98, "top": 0.96, "bottom": 0.04})
        curves = pd.concat([oos.rename("strategy"), bench], axis=1).fillna(0.0)
        for name in curves.columns:
            eq_ax.plot(curves.index, (1 + curves[name]).cumprod(), label=name, lw=1.8 if name == "strategy" else 1)
        eq_ax.set_title("Out-of-sample equity (walk-forward, after costs) vs benchmarks")
        eq_ax.legend(loc="upper left")
        dd = drawdown(oos.fillna(0.0))
        dd_ax.fill_between(dd.index, -dd.to_numpy(), 0, color="#b42318", alpha=0.5)
        dd_ax.set_title("Drawdown below the running peak")
        values = grid.to_numpy()
        limit = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 0.01
        heat_ax.imshow(values, cmap="RdYlGn", vmin=-limit, vmax=limit, aspect="auto")
        heat_ax.set_xticks(range(12), ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                                       "Dec"])
        heat_ax.set_yticks(range(len(grid)), [str(y) for y in grid.index])
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                heat_ax.text(j, i, f"{v:.1%}", ha="center", va="center", fontsize=7)
        heat_ax.set_title("Monthly out-of-sample returns")
        return _svg(fig)


def render_report(v, row: dict) -> str:
    """The page for one :class:`~alphatwin_pipelines.reports.evaluate.StrategyValidation`."""
    m = v.oos_metrics
    lines = explain(m)
    metric_rows = pd.DataFrame([{"metric": k, "value": m[k], "meaning": lines.get(k, "")}
                                for k in ("sharpe", "sortino", "cagr", "max_drawdown", "max_drawdown_duration",
                                          "win_rate", "profit_factor", "exposure", "n_trades", "avg_holding_period")])
    gates = pd.DataFrame([{"gate": g, "result": "FAIL" if g in v.failures else "pass",
                           "reason": v.failures.get(g, "")} for g in GATES])
    verdict = ('<p class="pass"><b>PASSED</b> every gate</p>' if v.passed else
               f'<p class="fail"><b>FAILED</b>: {html.escape("; ".join(v.failures.values()))}</p>')
    windows = v.windows[["window", "train_start", "train_end", "test_start", "test_end", "trials", "train_sharpe",
                         "test_sharpe", "params"]]
    title = f"{v.spec.family} level {v.spec.level} - {v.strategy_id[:16]}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>", verdict,
        f"<p>Spec <code>{html.escape(v.spec.to_json())}</code> on {len(v.symbols)} symbols; study of "
        f"{int(row['n_trials'])} trials, in-sample Sharpe {_fmt(float(row['is_sharpe']))} "
        f"({_fmt(pd.Timestamp(row['start']))} to {_fmt(pd.Timestamp(row['end']))}). "
        f"DSR {_fmt(v.dsr)} deflated by N = {v.dsr_trials} trials (every trial run for the {v.spec.family} "
        f"family: its studies at all levels and all their walk-forward windows), PBO {_fmt(v.pbo)}.</p>",
        "<h2>Gates</h2>", table(gates),
        "<h2>Out-of-sample metrics (walk-forward, after costs)</h2>", table(metric_rows),
        charts(v.oos_returns, v.benchmark_returns) if len(v.oos_returns) > 1 else "<p>No out-of-sample sessions.</p>",
        "<h2>Against benchmarks (same dates, same costs)</h2>",
        "<p>information_ratio: annualised mean over std of the strategy's daily log returns minus the "
        "benchmark's; above 0 exactly when the strategy compounded more. The benchmark gate asks for more "
        "than the threshold against every benchmark.</p>", table(v.benchmarks),
        "<h2>Cost sensitivity (the walk-forward's choices, costs scaled)</h2>", table(v.cost_sensitivity),
        "<h2>By market regime (labels use data up to each session only)</h2>", table(v.regimes),
        "<h2>Walk-forward (re-optimised in each train window)</h2>", _walk_forward_summary(v),
        table(windows),
        "<h3>Parameter stability across windows</h3>",
        "<p>stability: 1 when every window chose the same value, about 0 when the choices are as spread as "
        "uniform random draws from the search space (numbers: 1 - std / std of a uniform draw; "
        "categories: modal share rescaled); cv = std / |mean|.</p>", table(v.stability),
        "<h2>Target weights after the last close (the study's best spec)</h2>", table(v.positions),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _walk_forward_summary(v) -> str:
    wf = v.walk_forward
    if wf is None:
        return ""
    return (f"<p>{html.escape(wf.mode)} windows; each window's study ran its own trials on the market cut at its "
            f"train end ({wf.n_trials} trials over {len(v.windows)} windows). Between train and test: a purge of "
            f"{wf.purge} sessions (longest lookback {wf.lookback} + holding horizon {wf.horizon} of the spec) and "
            f"an embargo of {wf.embargo}. Walk-forward efficiency (OOS Sharpe / mean in-sample Sharpe of the "
            f"windows' studies) {_fmt(v.wf_efficiency)}; parameter stability {_fmt(v.param_stability)}.</p>")
