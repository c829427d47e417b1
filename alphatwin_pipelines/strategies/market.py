"""Aligned market arrays and signal containers: the only inputs and outputs of the strategy layer.

:class:`MarketArrays` holds one (T, N) float64 array per OHLCV field, rows = sessions in date
order, columns = symbols, NaN where a symbol has no bar (before its listing, after its
delisting, on a halted session). Its arrays are read-only copies, so nothing downstream can
mutate them, and nothing here keeps a reference to the caller's frame or arrays.

:class:`Signals` is what a strategy hands to the backtest engine: boolean ``entries`` and
``exits`` decided at the *close* of each session, and a float ``size`` (the fraction of equity
to commit when an entry fills). The engine, not the strategy, decides when an order fills
(next open by default; see ``alphatwin_pipelines.backtest``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "volume")


def _frozen(x, shape=None) -> np.ndarray:
    """A C-contiguous float64 read-only *copy* (never a view of the caller's array)."""
    arr = np.array(x, dtype=np.float64, copy=True, order="C")
    if shape is not None and arr.shape != shape:
        raise ValueError(f"expected an array of shape {shape}, got {arr.shape}")
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False)
class MarketArrays:
    """Aligned (T, N) float64 arrays of ``open, high, low, close, volume`` plus labels."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    dates: pd.DatetimeIndex
    symbols: tuple[str, ...]
    price: str = "adj"
    #: horizon -> (T, N) model scores decided at each close (``alpha_predictions``), for ``ml_rank``
    scores: dict | None = None

    def __post_init__(self):
        close = np.asarray(self.close)
        if close.ndim != 2:
            raise ValueError(f"market arrays must be 2-D (sessions x symbols), got {close.ndim}-D")
        shape = close.shape
        for name in FIELDS:
            object.__setattr__(self, name, _frozen(getattr(self, name), shape))
        dates = pd.DatetimeIndex(self.dates)
        if len(dates) != shape[0] or not dates.is_monotonic_increasing or dates.has_duplicates:
            raise ValueError("dates must be unique, increasing and one per row")
        symbols = tuple(str(s) for s in self.symbols)
        if len(symbols) != shape[1] or len(set(symbols)) != len(symbols):
            raise ValueError("symbols must be unique and one per column")
        object.__setattr__(self, "dates", dates)
        object.__setattr__(self, "symbols", symbols)
        if self.scores is not None:
            object.__setattr__(self, "scores", {int(h): _frozen(a, shape) for h, a in self.scores.items()})

    @classmethod
    def from_bars(cls, frame: pd.DataFrame, price: str = "adj") -> "MarketArrays":
        """Pivot a long bar frame (``symbol, date`` + price columns) to aligned arrays.

        ``price="adj"`` reads ``adj_open … adj_volume`` (as from ``load("cleaned_ohlcv")``);
        ``price="raw"`` reads ``open … volume``. Missing (symbol, date) pairs are NaN. The frame
        is not modified.
        """
        if price not in ("adj", "raw"):
            raise ValueError(f"price must be 'adj' or 'raw', got {price!r}")
        cols = [f"adj_{f}" if price == "adj" else f for f in FIELDS]
        missing = [c for c in ("symbol", "date", *cols) if c not in frame.columns]
        if missing:
            raise ValueError(f"bars frame lacks columns {missing}")
        sym_codes, symbols = pd.factorize(frame["symbol"].astype("string"), sort=True)
        date_values = pd.to_datetime(frame["date"]).to_numpy(dtype="datetime64[ns]")
        date_codes, dates = pd.factorize(date_values, sort=True)
        if len(frame) and pd.MultiIndex.from_arrays([sym_codes, date_codes]).has_duplicates:
            raise ValueError("bars frame has duplicate (symbol, date) rows")
        shape = (len(dates), len(symbols))
        arrays = {}
        for name, col in zip(FIELDS, cols):
            out = np.full(shape, np.nan)
            out[date_codes, sym_codes] = frame[col].to_numpy(dtype=np.float64, na_value=np.nan)
            arrays[name] = out
        return cls(**arrays, dates=pd.DatetimeIndex(dates), symbols=tuple(symbols), price=price)

    @property
    def shape(self) -> tuple[int, int]:
        return self.close.shape

    def with_scores(self, frames: dict) -> "MarketArrays":
        """This market carrying ``horizon -> (dates x symbols) score frame`` aligned to its rows and
        columns (NaN where a symbol has no score that session). Scores must be point in time: the
        score of row t is the prediction made at the close of t."""
        aligned = {int(h): pd.DataFrame(f).reindex(index=self.dates, columns=list(self.symbols)).to_numpy(dtype=float)
                   for h, f in frames.items()}
        return MarketArrays(**{f: getattr(self, f) for f in FIELDS}, dates=self.dates, symbols=self.symbols,
                            price=self.price, scores=aligned)

    def score(self, horizon: int) -> np.ndarray:
        """The (T, N) model scores of ``horizon`` (see :meth:`with_scores`)."""
        if not self.scores or int(horizon) not in self.scores:
            have = sorted(self.scores) if self.scores else []
            raise ValueError(f"this market carries no alpha_predictions scores of horizon {horizon} (has {have}): "
                             "materialise alpha_models and alpha_predictions for these sessions so ml_rank can rank")
        return self.scores[int(horizon)]

    @cached_property
    def columns(self) -> pd.Index:
        """The symbols as a pandas Index named ``symbol`` (built once)."""
        return pd.Index(self.symbols, name="symbol")

    def select(self, symbols=None, start=None, end=None) -> "MarketArrays":
        """A sub-market: some symbols and/or an inclusive date range (copies)."""
        rows = np.ones(len(self.dates), dtype=bool)
        if start is not None:
            rows &= self.dates >= pd.Timestamp(start)
        if end is not None:
            rows &= self.dates <= pd.Timestamp(end)
        if symbols is None:
            cols = np.arange(len(self.symbols))
        else:
            index = {s: i for i, s in enumerate(self.symbols)}
            unknown = [s for s in symbols if s not in index]
            if unknown:
                raise KeyError(f"unknown symbols {unknown}")
            cols = np.array([index[s] for s in symbols], dtype=np.intp)
        pick = {f: getattr(self, f)[rows][:, cols] for f in FIELDS}
        scores = None if self.scores is None else {h: a[rows][:, cols] for h, a in self.scores.items()}
        return MarketArrays(**pick, dates=self.dates[rows], symbols=tuple(self.symbols[i] for i in cols),
                            price=self.price, scores=scores)

    def frame(self, field_name: str = "close") -> pd.DataFrame:
        """One field as a (dates x symbols) DataFrame (a copy)."""
        return pd.DataFrame(np.array(getattr(self, field_name)), index=self.dates, columns=list(self.symbols))


@dataclass(frozen=True, eq=False)
class Signals:
    """Entries/exits decided at each session's close and the equity fraction of each entry.

    ``entries``/``exits`` are boolean (T, K); ``size`` is float (T, K), read at entry rows only
    (a value <= 0 or NaN there cancels the entry). ``columns`` labels the K columns (symbols,
    or (parameter set, symbol) pairs for a grid); ``dates`` labels the rows.

    ``resolved=True`` (as from ``generate``) promises that the long-only state machine has
    already run: entries and exits alternate in every column, starting with an entry, and
    ``size`` holds the trade's fraction on every in-position row. The engine then skips
    re-resolving, which is what makes 5,000-column grids cheap.
    """

    entries: np.ndarray
    exits: np.ndarray
    size: np.ndarray
    dates: pd.DatetimeIndex | None = None
    columns: pd.Index | None = None
    symbol_index: np.ndarray | None = field(default=None)  # column -> market column (grids)
    resolved: bool = False

    def __post_init__(self):
        entries = np.array(self.entries, dtype=bool, copy=True)
        if entries.ndim != 2:
            raise ValueError("signals must be 2-D (sessions x columns)")
        exits = np.array(self.exits, dtype=bool, copy=True)
        size = np.broadcast_to(np.asarray(self.size, dtype=np.float64), entries.shape).copy()
        if exits.shape != entries.shape:
            raise ValueError(f"exits shape {exits.shape} != entries shape {entries.shape}")
        for name, arr in (("entries", entries), ("exits", exits), ("size", size)):
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        if self.symbol_index is not None:
            idx = np.array(self.symbol_index, dtype=np.intp, copy=True)
            if idx.shape != (entries.shape[1],):
                raise ValueError("symbol_index needs one market column per signal column")
            idx.flags.writeable = False
            object.__setattr__(self, "symbol_index", idx)
        if self.columns is not None and not isinstance(self.columns, pd.Index):
            # (pd.Index(a MultiIndex) flattens it to tuples, so keep Index objects as they are)
            object.__setattr__(self, "columns", pd.Index(self.columns))
        if self.columns is not None and len(self.columns) != entries.shape[1]:
            raise ValueError("columns must label every signal column")

    @property
    def shape(self) -> tuple[int, int]:
        return self.entries.shape

    @classmethod
    def _owned(cls, entries, exits, size, dates, columns, symbol_index, resolved) -> "Signals":
        """Wrap arrays this package just created (no defensive copies; they are made read-only)."""
        if not (entries.shape == exits.shape == size.shape) or entries.ndim != 2:
            raise ValueError("entries, exits and size must be 2-D arrays of one shape")
        out = object.__new__(cls)
        for name, arr in (("entries", entries.astype(bool, copy=False)), ("exits", exits.astype(bool, copy=False)),
                          ("size", size.astype(np.float64, copy=False)), ("symbol_index", symbol_index)):
            if arr is not None:
                arr.flags.writeable = False
            object.__setattr__(out, name, arr)
        for name, value in (("dates", dates), ("columns", columns), ("resolved", bool(resolved))):
            object.__setattr__(out, name, value)
        return out

    @staticmethod
    def concat(parts: list["Signals"], keys: list, names=None) -> "Signals":
        """Stack several Signals side by side; columns become ``(key, original column)``."""
        cols = []
        for key, part in zip(keys, parts):
            inner = part.columns if part.columns is not None else pd.RangeIndex(part.shape[1])
            cols.extend((key, *(c if isinstance(c, tuple) else (c,))) for c in inner)
        sym = None
        if all(p.symbol_index is not None for p in parts):
            sym = np.concatenate([p.symbol_index for p in parts])
        return Signals._owned(
            np.hstack([p.entries for p in parts]), np.hstack([p.exits for p in parts]),
            np.hstack([p.size for p in parts]), parts[0].dates,
            pd.MultiIndex.from_tuples(cols, names=names), sym, all(p.resolved for p in parts),
        )
