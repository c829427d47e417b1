"""Scanner parts on hand-made inputs: evidence text rules, the top-pairs filter, merged returns."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from alphatwin_pipelines.scanner import pairs as pair_module
from alphatwin_pipelines.scanner.cross_asset import ReturnsPanel, merge_returns
from alphatwin_pipelines.scanner.pairs import Scratch, top_pairs
from alphatwin_pipelines.scanner.packed import PackedFrame, PackedStrings, concat_packed
from alphatwin_pipelines.scanner.signals import Evidence, format_shard_evidence


def test_evidence_format_rules_and_row_order():
    """4 decimals, null for NaN/inf, integer keys as integers, whole floats still floats, key
    order, and rows put back in the frame's order."""
    keys = ("rsi_14", "sessions_since_cross", "close")
    values = np.array([[24.12344, 24.12346, -4e-5], [0, 3, 12], [np.nan, np.inf, 1e7]])  # keys × rows
    first = Evidence(keys, (False, True, False), values)
    other, later = (Evidence(("close",), (False,), np.array([v])) for v in ([101.2, -np.inf], [1e20 / 3]))
    # symbol 1 fires signal 6 on three rows, then signal 0 on two; symbol 2 fires signal 0 on one
    text = format_shard_evidence([{6: first, 0: other}, {0: later}], np.array([6, 6, 6, 0, 0, 0]))
    strings = PackedStrings.from_arrow(text).to_arrow().to_pylist()
    assert strings[:3] == ['{"rsi_14":24.1234,"sessions_since_cross":0,"close":null}',
                           '{"rsi_14":24.1235,"sessions_since_cross":3,"close":null}',
                           '{"rsi_14":-0.0,"sessions_since_cross":12,"close":10000000.0}']
    parsed = [json.loads(s) for s in strings]
    assert np.signbit(parsed[2]["rsi_14"]) and type(parsed[2]["close"]) is float
    assert type(parsed[2]["sessions_since_cross"]) is int
    assert parsed[3:] == [{"close": 101.2}, {"close": None}, {"close": np.round(1e20 / 3, 4)}]


@pytest.mark.parametrize("block", [16, 128])
@pytest.mark.parametrize("k", [1, 25, 400])
def test_top_pairs_equal_a_brute_force_ranking_of_every_pair(k, block, monkeypatch):
    """The float32 filter never drops a true top pair, even among near-ties it cannot tell apart,
    whether the matrix is filtered in one block or in eight."""
    monkeypatch.setattr(pair_module, "_PAIR_BLOCK", block)
    rng = np.random.default_rng(5)
    window = rng.normal(size=(60, 120)) + rng.normal(size=(60, 1)) * 0.8  # one common factor
    window[:, 40:60] = window[:, [7]] + rng.normal(0, 1e-9, (60, 20))  # 20 near-identical columns: 190 near-ties
    window[:, 100] = np.nan  # incomplete windows and a constant column are left out
    window[:, 101] = 3.0
    centred = window - window.mean(axis=0)
    sumsq = (centred * centred).sum(axis=0)
    i, j, corr = top_pairs(centred, sumsq, k, Scratch())

    usable = [c for c in range(120) if c not in (100, 101)]
    pairs = [(float(np.corrcoef(window[:, a], window[:, b])[0, 1]), a, b)
             for n, a in enumerate(usable) for b in usable[n + 1 :]]
    pairs.sort(key=lambda t: (-t[0], t[1], t[2]))
    expected = pairs[:k]
    assert len(corr) == k and (i < j).all()
    np.testing.assert_allclose(corr, [c for c, _, _ in expected], rtol=0, atol=1e-12)
    chosen = {frozenset(p) for p in zip(i.tolist(), j.tolist())}
    true_corr = {frozenset((a, b)): c for c, a, b in pairs}
    # no chosen pair is worse than the k-th best; only a tie at the cut (< 1e-12, last bits) may swap pairs
    assert min(true_corr[p] for p in chosen) >= expected[-1][0] - 1e-12
    if expected[-1][0] - pairs[k][0] >= 1e-12:
        assert chosen == {frozenset((a, b)) for _, a, b in expected}


def test_merged_returns_equal_an_outer_join_sorted_by_symbol():
    """Shards with their own dates and symbols out of order: the union of dates, NaN where a
    symbol has no return, columns sorted, as pandas' outer concat gives."""
    rng = np.random.default_rng(3)
    days = pd.bdate_range("2024-01-01", periods=12).to_numpy(dtype="datetime64[ns]")
    shards = [(days[2:], ["MSFT", "AAPL"]), (days[:9], ["ZION"]), (days[::2], ["BAC", "KO", "A"]), (days[:0], [])]
    panels = [ReturnsPanel(d, np.asarray(s, dtype=object), rng.normal(size=(d.size, len(s)))) for d, s in shards]
    merged = merge_returns(panels)
    frames = [pd.DataFrame(p.values, index=p.dates, columns=p.symbols) for p in panels if p.symbols.size]
    expected = pd.concat(frames, axis=1, join="outer", sort=True)
    expected = expected[sorted(expected.columns)]
    np.testing.assert_array_equal(merged.dates, expected.index.to_numpy())
    assert merged.symbols.tolist() == ["A", "AAPL", "BAC", "KO", "MSFT", "ZION"]
    np.testing.assert_array_equal(merged.values, expected.to_numpy())
    assert merged.values.flags.c_contiguous
    empty = merge_returns([panels[-1]])
    assert empty.values.shape == (0, 0) and empty.symbols.size == 0


def test_packed_frame_round_trips_through_dask_serialization_without_copying_strings():
    from distributed.protocol.serialize import deserialize, serialize

    frame = pd.DataFrame({
        "date": pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-03"]).as_unit("ns"),
        "symbol": pd.array(["AAPL", "MSFT", "ÆØÅ"], dtype="string"),
        "with_null": pd.array(["x", None, "z"], dtype="string"),
        "rank": np.array([1, 2, 3], dtype=np.int64),
        "score": [0.5, np.nan, -0.0],
        "flag": [True, False, True],
        "nullable": pd.array([1, None, 3], dtype="Int64"),
    })
    packed = PackedFrame.from_frame(frame)
    arrow_data = pa.array(frame["symbol"].array).buffers()[2]
    assert packed.values[1].data.__array_interface__["data"][0] == arrow_data.address  # a view, not a copy
    header, frames = serialize(packed)
    back = deserialize(header, frames).to_frame()
    pd.testing.assert_frame_equal(back, frame)
    assert np.signbit(back["score"].iloc[2])
    empty = frame.iloc[:0].reset_index(drop=True)
    pd.testing.assert_frame_equal(PackedFrame.from_frame(empty).to_frame(), empty)
    with pytest.raises(ValueError, match="reset the frame's index"):
        PackedFrame.from_frame(frame.iloc[1:])


def test_concat_packed_equals_pandas_concat_of_the_frames():
    rng = np.random.default_rng(5)
    frames = [pd.DataFrame({
        "symbol": pd.array([f"S{i}" for i in rng.integers(0, 50, n)], dtype="string"),
        "sparse": pd.array([None if i % 3 else "x" for i in range(n)], dtype="string"),
        "value": rng.normal(size=n),
        "rank": np.arange(n, dtype=np.int64),
        "nullable": pd.array([None if i % 2 else i for i in range(n)], dtype="Int64"),
    }) for n in (5, 0, 17, 1)]
    expected = pd.concat(frames, ignore_index=True)
    pd.testing.assert_frame_equal(concat_packed([PackedFrame.from_frame(f) for f in frames]), expected)
    with pytest.raises(ValueError, match="at least one"):
        concat_packed([])
    with pytest.raises(ValueError, match="same columns in every part"):
        concat_packed([PackedFrame.from_frame(frames[0]), PackedFrame.from_frame(frames[2][["value", "symbol"]])])
