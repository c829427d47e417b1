"""Forward-return labels from adjusted bars (see the package docstring for the timing)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from alphatwin_pipelines.calendar import all_sessions

#: Label horizons in sessions.
HORIZONS: tuple[int, ...] = (1, 5, 20)
LABEL_COLUMNS = ("date", "symbol", "horizon", "fwd_return", "available")


def label_lookback(horizons=HORIZONS) -> int:
    """Sessions of bars before a partition that its labels read: the entry open is 1 + h sessions back."""
    return 1 + max(horizons)


def compute_labels(bars: pd.DataFrame, available: pd.DatetimeIndex, horizons=HORIZONS) -> pd.DataFrame:
    """The labels that become known at each session of ``available``.

    ``bars`` holds ``symbol``, ``date`` and ``adj_open`` (adjusted as of any session at or after
    the last one read: a ratio of two opens is the same under any later adjustment). A label
    needs both opens on their exact sessions; a symbol without a bar on either has none.
    """
    sessions = all_sessions()
    available = pd.DatetimeIndex(available)
    if bars.empty or len(available) == 0:
        return _empty()
    opens = bars.pivot_table(index="date", columns="symbol", values="adj_open", aggfunc="last")
    opens = opens.reindex(sessions[sessions.searchsorted(opens.index.min()):sessions.searchsorted(available[-1]) + 1])
    index, symbols, values = opens.index, opens.columns.astype(str).to_numpy(), opens.to_numpy(dtype=float)
    frames = []
    for h in sorted(horizons):
        exit_at = index.get_indexer(available)
        entry_at = exit_at - h
        decision_at = entry_at - 1
        ok = decision_at >= 0
        exit_at, entry_at, decision_at = exit_at[ok], entry_at[ok], decision_at[ok]
        ret = values[exit_at] / values[entry_at] - 1.0  # (sessions, symbols)
        row, col = np.nonzero(np.isfinite(ret))
        frames.append(pd.DataFrame({
            "date": index[decision_at[row]],
            "symbol": pd.array(symbols[col], dtype="string"),
            "horizon": np.full(row.size, h, dtype=np.int64),
            "fwd_return": ret[row, col],
            "available": index[exit_at[row]],
        }))
    out = pd.concat(frames, ignore_index=True) if frames else _empty()
    return out.sort_values(["available", "horizon", "symbol"], kind="stable").reset_index(drop=True)


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"date": pd.Series(dtype="datetime64[ns]"), "symbol": pd.Series(dtype="string"),
                         "horizon": pd.Series(dtype="int64"), "fwd_return": pd.Series(dtype="float64"),
                         "available": pd.Series(dtype="datetime64[ns]")})
