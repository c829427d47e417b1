"""Walk-forward validation: re-optimise on a train window, trade the next test window, repeat.

Windows are counted in sessions (rows of the sorted, unique ``dates``), never in calendar days:

    rolling:  [train 0 ][test 0]
                      [train 1 ][test 1]            (each step moves by ``step`` sessions)
    anchored: [train 0    ][test 0]
              [train 1          ][test 1]           (train always starts at the first session)

Every train window ends before its test window starts, and two runs of sessions may lie in
between, in this order::

    [train ...... train_end][purge ....][embargo ..][test start ...... test end]

* ``purge``: sessions whose information a train-window decision and a test-window decision
  could share: a test decision reads indicators ``lookback`` sessions back and a trade opened
  in the train window stays open ``horizon`` sessions, so ``purge >= lookback + horizon`` keeps
  the two samples from overlapping (validation derives both from the strategy's parameters).
* ``embargo``: a further margin after the purge for dependence neither captures (volatility
  clustering, slow drifts), as in López de Prado's purged cross-validation.

Nothing decided in-sample can see a test-window date. With the default ``step = test`` the
test windows tile the tail of the dates with no overlap and no gap (only the first test window
waits for the purge and embargo), and their returns stitch into one out-of-sample series.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from alphatwin_pipelines.stats.metrics import PERIODS_PER_YEAR, compute_metrics

__all__ = ["Window", "WalkForwardResult", "walk_forward_windows", "walk_forward"]


@dataclass(frozen=True)
class Window:
    """One train/test split; the dates are inclusive, positions index into ``dates``."""

    index: int
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp
    train_positions: slice
    test_positions: slice
    purge: int = 0  # sessions purged right after train_end
    embargo: int = 0  # sessions embargoed after the purge, before test_start

    @property
    def n_train(self) -> int:
        return self.train_positions.stop - self.train_positions.start

    @property
    def n_test(self) -> int:
        return self.test_positions.stop - self.test_positions.start


def walk_forward_windows(dates, train: int, test: int, step: int | None = None,
                         anchored: bool = False, purge: int = 0, embargo: int = 0,
                         allow_partial: bool = True) -> list[Window]:
    """Train/test windows over ``dates`` (any order, duplicates allowed: they are uniqued).

    ``train`` and ``test`` are lengths in sessions; ``step`` (default ``test``) is how far each
    window moves on; ``anchored`` grows the train window from the first session instead of
    rolling it; ``purge`` then ``embargo`` sessions are skipped between train end and test start
    (module docstring). The last test window may be shorter than ``test`` unless
    ``allow_partial=False``.
    """
    for name, value, low in (("train", train, 1), ("test", test, 1), ("purge", purge, 0), ("embargo", embargo, 0)):
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    step = test if step is None else step
    if int(step) != step or step < 1:
        raise ValueError(f"step must be an integer >= 1, got {step!r}")
    gap = int(purge) + int(embargo)
    sessions = pd.DatetimeIndex(pd.to_datetime(pd.Index(dates)).unique()).sort_values()
    n = len(sessions)
    windows: list[Window] = []
    test_start = train + gap
    while test_start < n:
        test_stop = min(test_start + test, n)
        if test_stop - test_start < test and not allow_partial:
            break
        train_stop = test_start - gap
        train_lo = 0 if anchored else train_stop - train
        windows.append(Window(
            index=len(windows),
            train_start=sessions[train_lo], train_end=sessions[train_stop - 1],
            test_start=sessions[test_start], test_end=sessions[test_stop - 1],
            train_positions=slice(train_lo, train_stop),
            test_positions=slice(test_start, test_stop),
            purge=int(purge), embargo=int(embargo),
        ))
        test_start += step
    if not windows:
        raise ValueError(f"{n} sessions are too few for train={train} + purge={purge} + embargo={embargo} "
                         f"+ a test window: {train + gap + 1} sessions at least")
    return windows


@dataclass
class WalkForwardResult:
    windows: list[Window]
    params: list  # the parameters chosen in each train window
    window_metrics: pd.DataFrame  # one row of OOS metrics per window
    oos_returns: pd.Series  # the test windows' returns, stitched
    oos_metrics: dict  # metrics of the stitched OOS series
    in_sample_metrics: pd.DataFrame | None = None  # per window, when evaluate_in_sample=True
    in_sample_returns: list = field(default_factory=list)


def _date_slice(data, start, end):
    """Rows of ``data`` with start <= date <= end, by DatetimeIndex or a ``date`` column."""
    if isinstance(data.index, pd.DatetimeIndex):
        dates = data.index
    elif isinstance(data, pd.DataFrame) and "date" in data.columns:
        dates = pd.DatetimeIndex(data["date"])
    else:
        raise TypeError("data needs a DatetimeIndex or a 'date' column")
    keep = np.asarray((dates >= start) & (dates <= end))
    return data[keep]


def _clip(returns, window: Window, name: str) -> pd.Series:
    if not isinstance(returns, pd.Series) or not isinstance(returns.index, pd.DatetimeIndex):
        raise TypeError(f"evaluate_fn must return a pd.Series indexed by date ({name})")
    if not returns.index.is_unique:
        raise ValueError(f"evaluate_fn returned duplicate dates ({name})")
    ret = returns.sort_index()
    return ret[(ret.index >= window.test_start) & (ret.index <= window.test_end)]


def walk_forward(
    evaluate_fn: Callable[[object, object], pd.Series],
    optimise_fn: Callable[[object], object],
    data,
    windows: Sequence[Window],
    warmup: int = 0,
    evaluate_in_sample: bool = False,
    periods_per_year: float = PERIODS_PER_YEAR,
) -> WalkForwardResult:
    """Re-optimise in every train window and trade the following test window out of sample.

    For each window: ``params = optimise_fn(train_slice)``, where ``train_slice`` holds only the
    rows dated within the train window; then ``evaluate_fn(test_slice, params)`` must return a
    daily return Series indexed by date. ``test_slice`` holds the test window's rows, preceded
    by ``warmup`` sessions of earlier history (for indicators' look-back; their returns are
    discarded). Only returns dated inside the test window are kept, so nothing the evaluation
    does with the warm-up rows leaks into the result. Test windows must not overlap.
    """
    windows = list(windows)
    for prev, nxt in zip(windows, windows[1:]):
        if nxt.test_start <= prev.test_end:
            raise ValueError(f"test windows {prev.index} and {nxt.index} overlap: stitching "
                             "would count some sessions twice (use step >= test)")
    all_dates = (data.index if isinstance(data.index, pd.DatetimeIndex)
                 else pd.DatetimeIndex(data["date"]))
    sessions = pd.DatetimeIndex(all_dates.unique()).sort_values()
    params, pieces, rows, is_rows, is_returns = [], [], [], [], []
    for w in windows:
        train_slice = _date_slice(data, w.train_start, w.train_end)
        chosen = optimise_fn(train_slice)
        params.append(chosen)
        first = sessions.searchsorted(w.test_start)
        start = sessions[max(first - warmup, 0)] if warmup else w.test_start
        oos = evaluate_fn(_date_slice(data, start, w.test_end), chosen)
        oos = _clip(oos, w, f"window {w.index}")
        pieces.append(oos)
        rows.append({"window": w.index, "train_start": w.train_start, "train_end": w.train_end,
                     "test_start": w.test_start, "test_end": w.test_end, "params": chosen,
                     **compute_metrics(oos, periods_per_year=periods_per_year)})
        if evaluate_in_sample:
            ins = evaluate_fn(train_slice, chosen)
            is_returns.append(ins)
            is_rows.append({"window": w.index,
                            **compute_metrics(ins, periods_per_year=periods_per_year)})
    stitched = pd.concat(pieces) if pieces else pd.Series(dtype=float)
    if not stitched.index.is_unique:
        raise ValueError("stitched out-of-sample returns have duplicate dates")
    return WalkForwardResult(
        windows=windows,
        params=params,
        window_metrics=pd.DataFrame(rows).set_index("window") if rows else pd.DataFrame(),
        oos_returns=stitched.rename("oos_return"),
        oos_metrics=compute_metrics(stitched, periods_per_year=periods_per_year),
        in_sample_metrics=pd.DataFrame(is_rows).set_index("window") if is_rows else None,
        in_sample_returns=is_returns,
    )
