"""The most correlated symbol pairs of one 60-session window: the costliest kernel of a backfill."""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=4)
def _lower_mask(n: int) -> np.ndarray:
    return np.tri(n, dtype=bool)  # diagonal and below


class Scratch:
    """Big buffers reused across a chunk's sessions. Dask's nanny sets MALLOC_TRIM_THRESHOLD_,
    which pins glibc's mmap threshold: each fresh multi-MB array would cost an mmap plus page
    faults, making context tasks much slower on a worker than in a plain process."""

    def __init__(self):
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
        size = int(np.prod(shape))
        buffer = self._buffers.get(name)
        if buffer is None or buffer.size < size:
            buffer = self._buffers[name] = np.empty(size, dtype=dtype)
        return buffer[:size].reshape(shape)


#: Float32 products are off by < 1e-5 for standardised 60-row columns; candidates are taken
#: this far below the float32 threshold, so no true top pair is missed.
_FLOAT32_MARGIN = 1e-4
#: Rows of the correlation matrix per block: a 128 × 1000 float32 block (0.5 MB) stays in a
#: core's L2 cache while it is filtered. Whole 4 MB matrices made every pass a trip to shared
#: memory, which two workers on two cores then fought over.
_PAIR_BLOCK = 128


def top_pairs(centred: np.ndarray, sumsq: np.ndarray, k: int, scratch: Scratch) -> tuple[np.ndarray, ...]:
    """(i, j, corr) of the k most correlated column pairs (i < j) among usable columns.

    ``centred`` is the demeaned window (rows × symbols), ``sumsq`` its column sums of squares;
    columns with a non-finite sum (incomplete window) or no variance are left out.

    The upper triangle of the product of standardised columns is computed in float32, a block
    of rows at a time, only as a filter. A threshold replaces a full sort: the k largest row
    maxima seen so far belong to k different pairs, so the k-th of them (less the float32
    margin) bounds the final k-th pair from below, and each block keeps only the pairs at or
    above it. The kept pairs' correlations are then computed in float64 and sorted; ties are
    broken by (i, j).
    """
    keep = np.flatnonzero(np.isfinite(sumsq) & (sumsq > 0))
    n = keep.size
    if n < 2 or k <= 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0)
    z = np.take(centred, keep, axis=1, out=scratch.get("z", (centred.shape[0], n)))
    np.divide(z, np.sqrt(sumsq[keep]), out=z)
    z32 = scratch.get("z32", z.shape, dtype=np.float32)
    z32[...] = z
    k = min(k, n * (n - 1) // 2)
    best_rows = np.empty(0, dtype=np.float32)  # the k largest row maxima so far
    found_i, found_j = [], []
    for r0 in range(0, n - 1, _PAIR_BLOCK):
        r1 = min(r0 + _PAIR_BLOCK, n)
        block = np.matmul(z32[:, r0:r1].T, z32[:, r0:], out=scratch.get("block", (r1 - r0, n - r0), dtype=np.float32))
        np.copyto(block[:, : r1 - r0], -np.inf, where=_lower_mask(r1 - r0))  # j <= i
        best_rows = np.concatenate([best_rows, block.max(axis=1)])
        if best_rows.size > k:
            best_rows = np.partition(best_rows, best_rows.size - k)[best_rows.size - k :]
        threshold = best_rows.min() - _FLOAT32_MARGIN if best_rows.size >= k else -np.inf
        mask = scratch.get("hits", block.shape, dtype=bool)
        if np.isfinite(threshold):
            np.greater_equal(block, threshold, out=mask)
        else:  # fewer than k rows seen: every pair of the block, but not the masked ones
            np.greater(block, -np.inf, out=mask)
        hits = np.flatnonzero(mask)
        rows, cols = np.divmod(hits, n - r0)
        found_i.append(rows + r0)
        found_j.append(cols + r0)
    i, j = np.concatenate(found_i), np.concatenate(found_j)
    values = np.einsum("ij,ij->j", z[:, i], z[:, j])
    best = np.lexsort((j, i, -values))[:k]
    return keep[i[best]], keep[j[best]], np.clip(values[best], -1.0, 1.0)
