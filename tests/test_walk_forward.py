"""Walk-forward windows and orchestration: tiling, ordering, re-optimisation, no look-ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphatwin_pipelines.stats.metrics import compute_metrics
from alphatwin_pipelines.stats.walk_forward import walk_forward, walk_forward_windows

DATES = pd.bdate_range("2020-01-01", periods=100)


def test_rolling_windows_tile_the_tail():
    windows = walk_forward_windows(DATES, train=30, test=10)
    assert len(windows) == 7
    assert windows[0].train_start == DATES[0] and windows[0].train_end == DATES[29]
    assert windows[0].test_start == DATES[30] and windows[-1].test_end == DATES[-1]
    for w in windows:
        assert w.n_train == 30 and w.n_test == 10
        assert w.train_end < w.test_start
        assert DATES.get_loc(w.test_start) == DATES.get_loc(w.train_end) + 1
    for prev, nxt in zip(windows, windows[1:]):
        assert DATES.get_loc(nxt.test_start) == DATES.get_loc(prev.test_end) + 1  # no gap/overlap
        assert nxt.train_start > prev.train_start
    covered = np.concatenate([DATES[w.test_positions] for w in windows])
    assert (pd.DatetimeIndex(covered) == DATES[30:]).all()


def test_anchored_windows_grow_from_the_first_session():
    windows = walk_forward_windows(DATES, train=30, test=10, anchored=True)
    assert all(w.train_start == DATES[0] for w in windows)
    assert [w.n_train for w in windows] == [30, 40, 50, 60, 70, 80, 90]


def test_partial_last_window_step_and_gap():
    dates = pd.bdate_range("2020-01-01", periods=105)
    windows = walk_forward_windows(dates, train=30, test=10)
    assert windows[-1].n_test == 5 and windows[-1].test_end == dates[-1]
    assert walk_forward_windows(dates, train=30, test=10, allow_partial=False)[-1].n_test == 10
    gapped = walk_forward_windows(dates, train=30, test=10, purge=3, embargo=2)
    assert all(dates.get_loc(w.test_start) - dates.get_loc(w.train_end) == 6 for w in gapped)
    assert all((w.purge, w.embargo) == (3, 2) for w in gapped)
    stepped = walk_forward_windows(dates, train=30, test=10, step=20)
    assert [dates.get_loc(w.test_start) for w in stepped] == [30, 50, 70, 90]
    with pytest.raises(ValueError):
        walk_forward_windows(dates[:20], train=30, test=10)
    with pytest.raises(ValueError):
        walk_forward_windows(dates, train=0, test=10)


def test_windows_accept_unsorted_repeated_dates():
    long_dates = np.concatenate([DATES[::-1], DATES])  # e.g. a long table with 2 symbols
    assert walk_forward_windows(long_dates, 30, 10) == walk_forward_windows(DATES, 30, 10)


@settings(max_examples=80, deadline=None)
@given(n=st.integers(5, 300), train=st.integers(1, 60), test=st.integers(1, 40),
       extra_step=st.integers(0, 20), purge=st.integers(0, 5), embargo=st.integers(0, 3), anchored=st.booleans())
def test_window_invariants(n, train, test, extra_step, purge, embargo, anchored):
    dates = pd.bdate_range("2015-01-01", periods=n)
    gap = purge + embargo
    if train + gap >= n:
        with pytest.raises(ValueError, match=f"{train + gap + 1} sessions at least"):
            walk_forward_windows(dates, train, test, test + extra_step, anchored, purge, embargo)
        return
    windows = walk_forward_windows(dates, train, test, test + extra_step, anchored, purge, embargo)
    for w in windows:
        assert w.train_end < w.test_start <= w.test_end
        assert dates.get_loc(w.test_start) - dates.get_loc(w.train_end) == gap + 1
        assert w.n_train == (dates.get_loc(w.train_end) + 1 if anchored else train)
        assert 1 <= w.n_test <= test
    for prev, nxt in zip(windows, windows[1:]):
        assert nxt.test_start > prev.test_end
        if extra_step == 0:
            assert dates.get_loc(nxt.test_start) == dates.get_loc(prev.test_end) + 1
    assert windows[-1].test_end == dates[-1] or extra_step > 0


def _regime_data() -> pd.DataFrame:
    """Three candidate return streams; 'a' is best for the first half, 'b' for the second."""
    rng = np.random.default_rng(4)
    dates = pd.bdate_range("2019-01-01", periods=400)
    frame = pd.DataFrame(rng.normal(0, 0.002, (400, 3)), index=dates, columns=list("abc"))
    frame.iloc[:200, 0] += 0.01
    frame.iloc[200:, 1] += 0.01
    return frame


class Recorder:
    """A fake optimiser picking the column with the best in-sample mean, recording what it saw."""

    def __init__(self):
        self.seen: list[pd.DatetimeIndex] = []

    def optimise(self, train: pd.DataFrame) -> str:
        self.seen.append(train.index)
        return str(train.mean().idxmax())

    @staticmethod
    def evaluate(test: pd.DataFrame, column: str) -> pd.Series:
        return test[column]


def test_walk_forward_reoptimises_each_window_without_look_ahead():
    data = _regime_data()
    windows = walk_forward_windows(data.index, train=60, test=20)
    rec = Recorder()
    res = walk_forward(rec.evaluate, rec.optimise, data, windows)
    assert len(rec.seen) == len(windows) == len(res.params) == 17
    for seen, w in zip(rec.seen, windows):
        assert seen.max() == w.train_end < w.test_start  # the optimiser never saw the test window
        assert seen.min() == w.train_start and len(seen) == 60
    # The chosen column follows the regime once the train window has moved past the switch.
    assert res.params[0] == "a" and res.params[-1] == "b"
    assert set(res.params) == {"a", "b"}
    # Stitched OOS returns: every session after the first train window, once, in order.
    assert res.oos_returns.index.equals(data.index[60:])
    for w, chosen in zip(windows, res.params):
        part = res.oos_returns.loc[w.test_start:w.test_end]
        pd.testing.assert_series_equal(part, data.loc[w.test_start:w.test_end, chosen],
                                       check_names=False)
    assert len(res.window_metrics) == 17 and "sharpe" in res.window_metrics.columns
    assert res.oos_metrics == pytest.approx(compute_metrics(res.oos_returns), nan_ok=True)


def test_warmup_rows_are_given_but_their_returns_dropped():
    data = _regime_data()
    windows = walk_forward_windows(data.index, train=60, test=20)
    starts = []

    def evaluate(test, column):
        starts.append(test.index.min())
        return test[column]  # includes the warm-up rows; walk_forward must drop them

    res = walk_forward(evaluate, Recorder().optimise, data, windows, warmup=10)
    assert starts[0] == data.index[50]
    assert res.oos_returns.index.equals(data.index[60:])


def test_long_format_data_and_in_sample_metrics():
    wide = _regime_data()
    long = wide.stack().rename("ret").reset_index().rename(columns={"level_0": "date",
                                                                   "level_1": "symbol"})
    windows = walk_forward_windows(long["date"], train=60, test=20)
    calls = []

    def optimise(train):
        calls.append(train["date"].max())
        return str(train.groupby("symbol")["ret"].mean().idxmax())

    def evaluate(test, symbol):
        rows = test[test["symbol"] == symbol]
        return pd.Series(rows["ret"].to_numpy(), index=pd.DatetimeIndex(rows["date"]))

    res = walk_forward(evaluate, optimise, long, windows, evaluate_in_sample=True)
    assert all(c < w.test_start for c, w in zip(calls, windows))
    assert res.oos_returns.index.equals(wide.index[60:])
    assert res.in_sample_metrics is not None and len(res.in_sample_metrics) == len(windows)
    # In-sample returns are the ones the optimiser chose on, so they beat OOS on average.
    assert res.in_sample_metrics["sharpe"].mean() > res.window_metrics["sharpe"].mean()


def test_overlapping_test_windows_are_rejected():
    data = _regime_data()
    windows = walk_forward_windows(data.index, train=60, test=20, step=10)
    with pytest.raises(ValueError, match="overlap"):
        walk_forward(Recorder.evaluate, Recorder().optimise, data, windows)


def test_evaluate_fn_must_return_a_dated_series():
    data = _regime_data()
    windows = walk_forward_windows(data.index, train=60, test=20)
    with pytest.raises(TypeError):
        walk_forward(lambda test, p: test[p].to_numpy(), Recorder().optimise, data, windows)
