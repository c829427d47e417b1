"""Market regimes, each session labelled from data up to that session only.

* **trend**: ``bull`` when the equal-weight index closes above its mean of the last
  ``trend_window`` sessions, ``bear`` below it; ``unknown`` until that much history exists.
* **volatility**: ``high`` when the index's realised volatility over the last ``vol_window``
  sessions is above the median of every such reading so far (an expanding median, so a later
  calm or crisis never relabels the past), ``low`` otherwise; ``unknown`` during the warm-up.

The index is the equal-weight average of the symbols' daily close-to-close returns (a symbol
counts from its second bar), compounded from 1.0: the same definition the strategies' regime
filters use, computed independently here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from alphatwin_pipelines.strategies import MarketArrays
from alphatwin_pipelines.stats.metrics import compute_metrics

TREND_WINDOW = 200
VOL_WINDOW = 20
#: Volatility readings needed before the expanding median means anything.
VOL_MIN_HISTORY = 60


def equal_weight_index(market: MarketArrays) -> pd.Series:
    close = market.close
    with np.errstate(invalid="ignore", divide="ignore"):
        daily = close[1:] / close[:-1] - 1.0
    ok = np.isfinite(daily)
    count = ok.sum(axis=1)
    mean = np.where(count > 0, np.where(ok, daily, 0.0).sum(axis=1) / np.maximum(count, 1), 0.0)
    mean = np.concatenate([[0.0], mean])
    return pd.Series(np.cumprod(1.0 + mean), index=market.dates, name="index")


def regime_labels(market: MarketArrays, trend_window: int = TREND_WINDOW, vol_window: int = VOL_WINDOW) -> pd.DataFrame:
    """Columns ``trend`` (bull/bear/unknown) and ``volatility`` (high/low/unknown) per session."""
    index = equal_weight_index(market)
    mean = index.rolling(trend_window, min_periods=trend_window).mean()
    trend = np.where(mean.isna(), "unknown", np.where(index > mean, "bull", "bear"))
    vol = index.pct_change().rolling(vol_window, min_periods=vol_window).std() * np.sqrt(252)
    median = vol.expanding(min_periods=VOL_MIN_HISTORY).median()
    volatility = np.where(median.isna(), "unknown", np.where(vol > median, "high", "low"))
    return pd.DataFrame({"trend": trend, "volatility": volatility}, index=market.dates)


def regime_breakdown(returns: pd.Series, labels: pd.DataFrame) -> pd.DataFrame:
    """Sessions, share of sessions, Sharpe, CAGR, win rate and max drawdown of ``returns`` per regime."""
    r = returns.dropna()
    lab = labels.reindex(r.index)
    rows = []
    for kind in ("trend", "volatility"):
        for name in sorted(lab[kind].dropna().unique()):
            part = r[lab[kind].to_numpy() == name]
            m = compute_metrics(part)
            rows.append({"regime": kind, "label": name, "sessions": int(len(part)),
                         "share": len(part) / len(r) if len(r) else np.nan,
                         "sharpe": m["sharpe"], "cagr": m["cagr"], "win_rate": m["win_rate"],
                         "max_drawdown": m["max_drawdown"]})
    return pd.DataFrame(rows, columns=["regime", "label", "sessions", "share", "sharpe", "cagr", "win_rate",
                                       "max_drawdown"])
