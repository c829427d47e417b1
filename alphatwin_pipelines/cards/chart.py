"""The card's entry/exit chart (PNG): one symbol's price with the strategy's signals, equity beneath.

The PNG bytes are deterministic for the same inputs (Agg renderer, no date or software
metadata), so a card's content hash changes only when its content does.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd


def representative_symbol(entries: pd.DataFrame, exits: pd.DataFrame) -> str:
    """The symbol with the most entries and exits in the frames' rows (ties: alphabetical)."""
    counts = (entries.sum() + exits.sum()).sort_index(kind="stable")
    return str(counts.idxmax())


def entry_exit_chart(close: pd.Series, entries: pd.Series, exits: pd.Series, equity: pd.Series, title: str) -> bytes:
    """PNG: ``close`` with entry (up) and exit (down) markers at the closes where the rule fired,
    and ``equity`` (growth of 1) in a panel beneath."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]})
    try:
        top.plot(close.index, close.to_numpy(), color="#444", linewidth=1.0, label=f"{close.name} close")
        on, off = entries.reindex(close.index, fill_value=False), exits.reindex(close.index, fill_value=False)
        top.scatter(close.index[on.to_numpy()], close[on].to_numpy(), marker="^", color="#1a7f37", s=36,
                    label=f"entry signal ({int(on.sum())})", zorder=3)
        top.scatter(close.index[off.to_numpy()], close[off].to_numpy(), marker="v", color="#b42318", s=36,
                    label=f"exit signal ({int(off.sum())})", zorder=3)
        top.set_title(title, fontsize=10)
        top.set_ylabel("adjusted price")
        top.legend(loc="upper left", fontsize=8)
        top.grid(alpha=0.3)
        if len(equity):
            bottom.plot(equity.index, equity.to_numpy(dtype=float), color="#1f4e9c", linewidth=1.0)
            bottom.axhline(1.0, color="#999", linewidth=0.6)
        else:
            bottom.text(0.5, 0.5, "no out-of-sample returns", ha="center", va="center", transform=bottom.transAxes)
        bottom.set_ylabel("OOS equity")
        bottom.grid(alpha=0.3)
        # Fixed tick positions and margins: automatic date ticks and tight_layout measured every
        # label several times and took most of the chart's time (one chart per strategy).
        years = (close.index[-1] - close.index[0]).days / 365.25 if len(close) else 0
        bottom.xaxis.set_major_locator(mdates.YearLocator() if years > 3 else mdates.MonthLocator(bymonth=(1, 4, 7, 10)))
        bottom.xaxis.set_major_formatter(mdates.DateFormatter("%Y" if years > 3 else "%Y-%m"))
        fig.subplots_adjust(left=0.09, right=0.98, top=0.93, bottom=0.08, hspace=0.12)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80, metadata={"Software": None})
        return buf.getvalue()
    finally:
        plt.close(fig)


def growth(returns: pd.Series) -> pd.Series:
    """Growth of 1 from daily returns (missing days count as flat)."""
    return (1.0 + returns.astype(float).fillna(0.0)).cumprod() if len(returns) else pd.Series(dtype=float)


__all__ = ["entry_exit_chart", "growth", "representative_symbol"]
