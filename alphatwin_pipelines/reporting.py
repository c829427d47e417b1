"""Small renderers for run reports: markdown tables that read well in the Dagster UI."""

from __future__ import annotations

import pandas as pd


def markdown_table(frame: pd.DataFrame, limit: int = 50) -> str:
    """A GitHub-style markdown table of the first ``limit`` rows, noting how many were left out."""
    if frame.empty:
        return "_none_"
    shown = frame.head(limit)
    cells = shown.astype(object).where(shown.notna(), "").astype(str)
    cells = cells.apply(lambda col: col.str.replace("|", "\\|", regex=False).str.replace("\n", " ", regex=False))
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(values) + " |" for values in cells.itertuples(index=False, name=None)]
    more = [f"\n_… {len(frame) - limit} more rows_"] if len(frame) > limit else []
    return "\n".join([header, rule, *rows, *more])


def preview(items, limit: int = 20) -> str:
    items = list(items)
    text = ", ".join(map(str, items[:limit]))
    return text + (f" … (+{len(items) - limit})" if len(items) > limit else "")
