"""Strings and frames as NumPy arrays, the form in which results travel between Dask processes."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa


class PackedStrings(NamedTuple):
    """Strings as Arrow's offsets + bytes in two NumPy arrays.

    Dask ships NumPy arrays as raw out-of-band frames, several times faster than a pickled
    string column, and a backfill's evidence is large.
    """

    offsets: np.ndarray  # int64, n + 1
    data: np.ndarray  # uint8, UTF-8 bytes

    @classmethod
    def from_arrow(cls, array: pa.Array | pa.ChunkedArray) -> PackedStrings:
        """``data`` is a read-only view that keeps Arrow's buffer alive, so the evidence is not
        copied."""
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
        array = array.cast(pa.large_string())
        if len(array) == 0:  # Arrow may leave an empty array's offsets buffer empty
            return cls(np.zeros(1, dtype=np.int64), np.empty(0, dtype=np.uint8))
        if array.null_count:
            raise ValueError("PackedStrings cannot hold nulls")
        _, offsets, data = array.buffers()
        offsets = np.frombuffer(offsets, dtype=np.int64)[array.offset : array.offset + len(array) + 1]  # a slice's own
        data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, np.uint8)
        return cls(offsets - offsets[0], data[offsets[0] : offsets[-1]])

    def to_arrow(self) -> pa.LargeStringArray:
        return pa.LargeStringArray.from_buffers(len(self.offsets) - 1, pa.py_buffer(self.offsets), pa.py_buffer(self.data))


class PackedFrame(NamedTuple):
    """A DataFrame with a default index as one array per column: Arrow-backed string
    columns without nulls as ``PackedStrings``, NumPy columns as they are, others as their
    pandas arrays.

    Pandas pickles an Arrow-backed column by first copying all its chunks into a new array
    (pandas GH 42600), and Dask pickles a frame's blocks in the worker's offload thread, which
    those copies kept busy. NumPy arrays are sent out of band, uncopied, and the frame is
    rebuilt on arrival without copies."""

    columns: tuple[str, ...]
    dtypes: tuple
    values: tuple

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> PackedFrame:
        if not frame.index.equals(pd.RangeIndex(len(frame))):
            raise ValueError("PackedFrame keeps no index: reset the frame's index first")
        values = []
        for position in range(frame.shape[1]):
            column = frame.iloc[:, position]
            if isinstance(column.dtype, pd.StringDtype) and column.dtype.storage == "pyarrow" and not column.hasnans:
                values.append(PackedStrings.from_arrow(pa.array(column.array)))
            elif isinstance(column.dtype, np.dtype):
                values.append(column.to_numpy())
            else:
                values.append(column.array)
        return cls(tuple(frame.columns), tuple(frame.dtypes), tuple(values))

    def to_frame(self) -> pd.DataFrame:
        columns = {name: _unpacked(value, dtype) for name, dtype, value in zip(self.columns, self.dtypes, self.values)}
        return pd.DataFrame(columns, columns=list(self.columns), copy=False)


def _unpacked(value, dtype):
    """A column's array as pandas takes it: packed strings back as their Arrow-backed dtype."""
    return pd.array(value.to_arrow(), dtype=dtype) if isinstance(value, PackedStrings) else value


def concat_packed(parts: list[PackedFrame]) -> pd.DataFrame:
    """The frames of ``parts`` (same columns) stacked into one, as ``pd.concat`` would, but
    without building a frame per part first, which for a backfill's context chunks was
    most of the driver's stacking time. Strings stay in their parts' buffers, as chunks of
    one column."""
    if not parts:
        raise ValueError("concat_packed needs at least one part")
    if any(part.columns != parts[0].columns for part in parts):
        raise ValueError(f"concat_packed needs the same columns in every part, in order; "
                         f"the first has {list(parts[0].columns)}")
    columns = {}
    for position, (name, dtype) in enumerate(zip(parts[0].columns, parts[0].dtypes)):
        values = [part.values[position] for part in parts]
        if all(isinstance(v, PackedStrings) for v in values):
            chunks = pa.chunked_array([v.to_arrow() for v in values], type=pa.large_string())
            columns[name] = pd.array(chunks, dtype=dtype)
        elif all(isinstance(v, np.ndarray) for v in values):
            columns[name] = np.concatenate(values)
        else:  # e.g. a string column with nulls in some parts only
            series = [pd.Series(_unpacked(v, dtype), copy=False) for v in values]
            columns[name] = pd.concat(series, ignore_index=True).array
    return pd.DataFrame(columns, columns=list(parts[0].columns), copy=False)
