"""Cross-source reconciliation: where two sources disagree on the same (symbol, date).

Only overlapping keys are compared; coverage differences (a row in one source only) are a
separate question and would drown the value disagreements this report is for.

Relative differences are symmetric, ``|p - s| / max(|p|, |s|)``, so swapping the sources
gives the same rows with the columns swapped, and the value is 1 when one side is 0 (an
action present in one source only). Dividends and split ratios are compared with a small
tolerance (``action_tol``) because sources round them differently (AAPL's 2014 split is
``7.000007`` in one feed and ``7.0`` in another), which is not a disagreement worth a ticket.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

REPORT_COLUMNS: tuple[str, ...] = ("symbol", "date", "field", "primary", "secondary", "rel_diff", "reason")
_NEEDED = ("symbol", "date", "close", "volume", "dividend", "split_ratio")


def _prepare(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    missing = [c for c in _NEEDED if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; reconcile needs {list(_NEEDED)}")
    out = pd.DataFrame(
        {
            "symbol": frame["symbol"].astype("string").str.upper(),
            "date": pd.to_datetime(frame["date"]).astype("datetime64[ns]"),
            **{c: pd.to_numeric(frame[c], errors="coerce").astype("float64") for c in _NEEDED[2:]},
        }
    )
    if out.duplicated(["symbol", "date"]).any():
        raise ValueError(f"{name} has duplicate (symbol, date) rows; deduplicate before reconciling")
    return out


def _rel(p: np.ndarray, s: np.ndarray) -> np.ndarray:
    scale = np.maximum(np.abs(p), np.abs(s))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scale == 0, 0.0, np.abs(p - s) / scale)


def reconcile(
    primary: pd.DataFrame,
    secondary: pd.DataFrame,
    close_tol: float = 0.005,
    volume_tol: float = 0.05,
    action_tol: float = 1e-4,
) -> pd.DataFrame:
    """Every disagreement on overlapping (symbol, date), one row per field, sorted.

    Fields: ``close`` and ``volume`` (relative difference above their tolerance, or a value
    missing on one side), ``dividend`` (cash amount; 0 means none) and ``split_ratio`` (1 means
    none). ``reason`` says which: ``... differs``, ``... missing in primary/secondary``,
    ``dividend only in primary/secondary``, ``split only in primary/secondary``.
    """
    merged = _prepare(primary, "primary").merge(
        _prepare(secondary, "secondary"), on=["symbol", "date"], how="inner", suffixes=("_p", "_s")
    )
    parts = []
    for fld, tol in (("close", close_tol), ("volume", volume_tol)):
        p, s = merged[f"{fld}_p"].to_numpy(), merged[f"{fld}_s"].to_numpy()
        rel = _rel(p, s)
        p_nan, s_nan = np.isnan(p), np.isnan(s)
        code = np.select([p_nan & s_nan, p_nan, s_nan, rel > tol], [0, 1, 2, 3], default=0)
        labels = ["", f"{fld} missing in primary", f"{fld} missing in secondary", f"{fld} differs"]
        parts.append((fld, p, s, rel, code, labels))

    for fld, neutral, label in (("dividend", 0.0, "dividend"), ("split_ratio", 1.0, "split")):
        p = merged[f"{fld}_p"].fillna(neutral).to_numpy()
        s = merged[f"{fld}_s"].fillna(neutral).to_numpy()
        rel = _rel(p, s)
        in_p, in_s = p != neutral, s != neutral
        code = np.select([in_p & ~in_s, in_s & ~in_p, in_p & in_s & (rel > action_tol)], [1, 2, 3], default=0)
        labels = ["", f"{label} only in primary", f"{label} only in secondary", f"{label} differs"]
        parts.append((fld, p, s, rel, code, labels))

    frames = []
    for fld, p, s, rel, code, labels in parts:  # integer codes: no per-row strings until the end
        hit = code > 0
        frames.append(
            pd.DataFrame(
                {
                    "symbol": merged["symbol"].to_numpy()[hit],
                    "date": merged["date"].to_numpy()[hit],
                    "field": fld,
                    "primary": p[hit],
                    "secondary": s[hit],
                    "rel_diff": rel[hit],
                    "reason": np.asarray(labels, dtype=object)[code[hit]],
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    out = out.astype({"symbol": "string", "field": "string", "reason": "string", "date": "datetime64[ns]"})
    return out.sort_values(["symbol", "date", "field"], kind="stable").reset_index(drop=True)[list(REPORT_COLUMNS)]
