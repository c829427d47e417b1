"""Probability of Backtest Overfitting by combinatorially symmetric cross-validation (CSCV).

Bailey, D. H., Borwein, J., López de Prado, M. and Zhu, Q. J. (2017), "The Probability of
Backtest Overfitting", Journal of Computational Finance 20(4), 39-69.

Given the (T x N) returns of N trial configurations over the same T sessions:

1. split the rows into S contiguous blocks (S even);
2. for each of the C(S, S/2) ways to choose S/2 blocks, those blocks form the in-sample (IS)
   set and the other S/2 the out-of-sample (OOS) set (each split and its mirror both occur);
3. n* = the configuration with the best IS metric;
4. omega = relative rank of n* among the N OOS metrics, rank / (N + 1) (rank 1 = worst,
   ties get their average rank); logit lambda = ln(omega / (1 - omega));
5. PBO = share of splits with lambda <= 0: how often the IS winner is at or below the OOS
   median. About 0.5 for pure noise, near 0 for a genuine edge, near 1 for IS/OOS reversal.

Also reported: the performance degradation (least-squares line OOS = intercept + slope * IS of
n* across splits; a negative slope means IS success predicts OOS failure) and the probability
of OOS loss (share of splits where n*'s OOS metric is below 0).

The Sharpe and mean metrics are computed from per-block sums, sums of squares and counts taken
once, so each split costs a (K x S) @ (S x N) product; splits are processed in chunks.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from alphatwin_pipelines.stats.metrics import _as_2d

__all__ = ["PBOResult", "Degradation", "probability_of_backtest_overfitting", "split_masks"]


@dataclass(frozen=True)
class Degradation:
    """Least-squares fit of OOS metric on IS metric of the selected configuration."""

    slope: float
    intercept: float
    r_squared: float


@dataclass(frozen=True)
class PBOResult:
    pbo: float
    logits: np.ndarray  # (K,) lambda for each split
    n_combinations: int
    performance_degradation: Degradation
    prob_oos_loss: float
    is_metric: np.ndarray  # (K,) IS metric of the selected configuration
    oos_metric: np.ndarray  # (K,) OOS metric of the same configuration
    selected: np.ndarray  # (K,) column index n* picked in each split
    n_splits: int
    metric: str

    def summary(self) -> str:
        d = self.performance_degradation
        return (f"PBO {self.pbo:.0%}: in {self.pbo:.0%} of {self.n_combinations} IS/OOS splits the "
                f"best in-sample configuration was at or below the median out of sample "
                f"(0.5 = no better than chance). OOS-vs-IS slope {d.slope:.2f}; "
                f"probability of an OOS loss {self.prob_oos_loss:.0%}.")


def split_masks(n_splits: int) -> np.ndarray:
    """(C(S, S/2), S) boolean matrix: row k marks the blocks that are in-sample in split k."""
    if n_splits < 2 or n_splits % 2:
        raise ValueError(f"n_splits must be an even number >= 2, got {n_splits}")
    combos = np.array(list(itertools.combinations(range(n_splits), n_splits // 2)))
    masks = np.zeros((len(combos), n_splits), dtype=bool)
    masks[np.arange(len(combos))[:, None], combos] = True
    return masks


def _block_metric(sums, sq, counts, metric: str) -> np.ndarray:
    """Metric per (split, configuration) from aggregated sums; -inf where undefined."""
    mean = sums / counts
    if metric == "mean":
        return mean
    var = sq - sums * mean  # (n - 1) * sample variance
    var /= counts - 1
    ok = var > 1e-12 * mean * mean  # zero (or round-off) variance: no Sharpe ratio
    out = np.full_like(mean, -np.inf)
    np.sqrt(var, out=var, where=ok)
    np.divide(mean, var, out=out, where=ok)
    return out


def _average_rank(values: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """1-based average rank (ascending) of values[k, chosen[k]] within each row k."""
    pick = values[np.arange(len(values)), chosen][:, None]
    below = (values < pick).sum(axis=1)
    ties = (values == pick).sum(axis=1)
    return below + (ties + 1) / 2.0


def probability_of_backtest_overfitting(
    perf_matrix,
    n_splits: int = 16,
    metric: str | Callable[[np.ndarray], np.ndarray] = "sharpe",
    chunk_size: int = 4096,
) -> PBOResult:
    """PBO of choosing the best of N configurations by CSCV (Bailey et al. 2017).

    ``perf_matrix``: (T x N) per-period returns of N configurations (DataFrame or array) over
    the same T rows; no NaNs (fill flat periods with 0 first). Rows are split into
    ``n_splits`` contiguous blocks of near-equal size (``np.array_split``). ``metric`` is
    ``"sharpe"`` (per-period mean / std, ddof=1; annualising would not change ranks),
    ``"mean"``, or a callable mapping a (t x N) array to N scores (slower: one call per split).
    Ties for the IS best go to the first configuration.
    """
    m = _as_2d(perf_matrix)[0]
    n_rows, n_cfg = m.shape
    if np.isnan(m).any():
        raise ValueError("perf_matrix contains NaN: align the trials and fill flat periods first")
    if n_cfg < 2:
        raise ValueError("need at least 2 configurations to measure selection")
    if n_rows < 2 * n_splits:
        raise ValueError(f"need at least 2 rows per block: {n_rows} rows for {n_splits} blocks")
    masks = split_masks(n_splits)
    blocks = np.array_split(np.arange(n_rows), n_splits)
    name = metric if isinstance(metric, str) else getattr(metric, "__name__", "custom")
    if isinstance(metric, str) and metric not in ("sharpe", "mean"):
        raise ValueError(f"metric must be 'sharpe', 'mean' or a callable, got {metric!r}")

    k_total = len(masks)
    is_metric, oos_metric = np.empty(k_total), np.empty(k_total)
    selected, ranks = np.empty(k_total, dtype=int), np.empty(k_total)
    if isinstance(metric, str):
        sums = np.stack([m[b].sum(axis=0) for b in blocks])  # (S, N)
        sq = np.stack([(m[b] ** 2).sum(axis=0) for b in blocks])
        counts = np.array([len(b) for b in blocks], dtype=float)
        tot_s, tot_q, tot_n = sums.sum(axis=0), sq.sum(axis=0), counts.sum()
        for lo in range(0, k_total, chunk_size):
            w = masks[lo:lo + chunk_size].astype(float)
            is_s, is_q, is_n = w @ sums, w @ sq, (w @ counts)[:, None]
            ins = _block_metric(is_s, is_q, is_n, metric)
            oos = _block_metric(tot_s - is_s, tot_q - is_q, tot_n - is_n, metric)
            best = ins.argmax(axis=1)
            rows = np.arange(len(best))
            sl = slice(lo, lo + len(best))
            selected[sl], is_metric[sl], oos_metric[sl] = best, ins[rows, best], oos[rows, best]
            ranks[sl] = _average_rank(oos, best)
    else:
        for k, mask in enumerate(masks):
            in_rows = np.concatenate([b for b, use in zip(blocks, mask) if use])
            out_rows = np.concatenate([b for b, use in zip(blocks, mask) if not use])
            ins = np.asarray(metric(m[in_rows]), dtype=float).reshape(-1)
            oos = np.asarray(metric(m[out_rows]), dtype=float).reshape(-1)
            ins, oos = np.where(np.isnan(ins), -np.inf, ins), np.where(np.isnan(oos), -np.inf, oos)
            best = int(ins.argmax())
            selected[k], is_metric[k], oos_metric[k] = best, ins[best], oos[best]
            ranks[k] = _average_rank(oos[None, :], np.array([best]))[0]

    omega = ranks / (n_cfg + 1.0)
    logits = np.log(omega / (1.0 - omega))
    return PBOResult(
        pbo=float(np.mean(logits <= 0)),
        logits=logits,
        n_combinations=k_total,
        performance_degradation=_fit(is_metric, oos_metric),
        prob_oos_loss=float(np.mean(oos_metric < 0)),
        is_metric=is_metric,
        oos_metric=oos_metric,
        selected=selected,
        n_splits=n_splits,
        metric=name,
    )


def _fit(x: np.ndarray, y: np.ndarray) -> Degradation:
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 2 or np.ptp(x) == 0:
        return Degradation(math.nan, math.nan, math.nan)
    dx, dy = x - x.mean(), y - y.mean()
    slope = float((dx * dy).sum() / (dx * dx).sum())
    intercept = float(y.mean() - slope * x.mean())
    ss_y = float((dy * dy).sum())
    r2 = float(1 - ((dy - slope * dx) ** 2).sum() / ss_y) if ss_y > 0 else math.nan
    return Degradation(slope, intercept, r2)
