"""The Sharpe-vs-complexity curve as a PNG: does each added rule still earn its keep in sample?

matplotlib is imported here, lazily, with the Agg backend (no display needed). The PNG carries
no timestamp, so the same curve renders to the same bytes.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pandas as pd

from alphatwin_pipelines.atomic import atomic_write_bytes
from alphatwin_pipelines.objectstore import is_remote


def render_sharpe_vs_complexity(curve: pd.DataFrame, path) -> Path:
    """Plot ``is_sharpe`` against ``complexity``, one line per family, points labelled by level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = path if is_remote(path) else Path(path)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    try:
        for family, rows in curve.sort_values(["family", "complexity"]).groupby("family", sort=True):
            ax.plot(rows["complexity"], rows["is_sharpe"], marker="o", label=family)
            for x, y, level in zip(rows["complexity"], rows["is_sharpe"], rows["level"]):
                ax.annotate(f"L{level}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xlabel("complexity score (params + rules + 2 x execution features + lookback years)")
        ax.set_ylabel("in-sample Sharpe (costs on)")
        ax.set_title("Best in-sample Sharpe per family and complexity level")
        ax.legend(fontsize=8)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", metadata={"Software": None})
    finally:
        plt.close(fig)
    atomic_write_bytes(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))  # a local file or an object
    return path


def png_markdown(path, alt: str = "Sharpe vs complexity") -> str:
    """Markdown with the PNG inlined as a ``data:`` URI (shows in the Dagster UI without file access)."""
    data = base64.b64encode((path if is_remote(path) else Path(path)).read_bytes()).decode("ascii")
    return f"![{alt}](data:image/png;base64,{data})"
