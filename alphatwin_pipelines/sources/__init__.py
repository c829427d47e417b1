"""Market-data sources behind one interface (``BarSource``).

Sources are imported lazily: the network clients are only loaded when chosen.
"""

from __future__ import annotations

from alphatwin_pipelines.sources.base import BarSource, FetchResult, Rejection, SourceConfigError

SOURCE_KINDS = ("synthetic", "csv", "yfinance", "polygon")


def make_source(kind: str, **settings) -> BarSource:
    """Build a source by name. ``settings`` are that source's constructor arguments."""
    kind = (kind or "synthetic").strip().lower()
    if kind == "synthetic":
        from alphatwin_pipelines.sources.synthetic import SyntheticSource

        return SyntheticSource(**settings)
    if kind == "csv":
        from alphatwin_pipelines.sources.csv_source import CsvFolderSource

        return CsvFolderSource(**settings)
    if kind == "yfinance":
        from alphatwin_pipelines.sources.yfinance_source import YFinanceSource

        return YFinanceSource(**settings)
    if kind == "polygon":
        from alphatwin_pipelines.sources.polygon_source import PolygonSource

        return PolygonSource(**settings)
    raise SourceConfigError(
        f"unknown source {kind!r}: set ALPHATWIN_SOURCE to one of {', '.join(SOURCE_KINDS)}"
    )


__all__ = ["BarSource", "FetchResult", "Rejection", "SourceConfigError", "SOURCE_KINDS", "make_source"]
