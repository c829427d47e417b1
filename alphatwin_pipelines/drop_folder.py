"""CSV files people drop into a folder, merged into raw bars for the sessions they cover.

A dropped file usually holds one symbol (``AAPL.csv``) or a handful (a ``symbol`` column), while a
raw partition holds the whole universe. Ingesting a drop therefore *merges*: the file's rows replace
the stored rows of the same symbol and session, and every other stored row is kept. (Running the
normal ingestion with the folder as its source would rewrite each session with only the dropped
symbols and silently delete the rest of the universe.)

Files are identified by content hash, not by name or mtime: re-saving an unchanged file triggers
nothing, and a run reads a private copy whose hash must match what the sensor saw, so a file being
rewritten while the run starts is refused rather than half-read.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.ingest import IngestReport, ingest
from alphatwin_pipelines.schema import empty_bars, to_canonical
from alphatwin_pipelines.sources.base import RULE_NO_DATA, BarSource, FetchResult
from alphatwin_pipelines.sources.csv_formats import _positions
from alphatwin_pipelines.sources.csv_source import CsvFolderSource
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import RAW
from alphatwin_pipelines.universe import is_valid_symbol

DROP_SUFFIX = ".csv"
RULE_BAD_FILE_NAME = "bad_file_name"
RULE_CHANGED_SINCE_SEEN = "changed_since_seen"
RULE_OUTSIDE_PARTITIONS = "outside_partitions"
_HASH_CHUNK = 1 << 20


class DropFileError(ValueError):
    """A dropped file cannot be ingested; the message names the file, the rule and the fix."""

    def __init__(self, name: str, rule: str, reason: str):
        super().__init__(f"{name}: [{rule}] {reason}")
        self.name, self.rule = name, rule


@dataclass(frozen=True)
class FileState:
    """What the sensor remembers of a file: size and mtime to skip re-hashing, the hash to decide."""

    size: int
    mtime_ns: int
    sha256: str

    def to_json(self) -> dict:
        return {"size": self.size, "mtime_ns": self.mtime_ns, "sha256": self.sha256}

    @classmethod
    def from_json(cls, raw: Mapping) -> FileState:
        return cls(int(raw["size"]), int(raw["mtime_ns"]), str(raw["sha256"]))


@dataclass(frozen=True)
class Inspection:
    """A dropped file that yields bars: which symbols, over which sessions, and what it lost."""

    name: str
    sha256: str
    symbols: tuple[str, ...]
    sessions: pd.DatetimeIndex
    rows: int
    rejected_rows: int


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def current_states(folder: Path, seen: Mapping[str, FileState]) -> dict[str, FileState]:
    """Every dropped CSV in ``folder`` (sorted by name); files whose size and mtime match ``seen``
    keep their recorded hash, so an idle folder costs one ``stat`` per file."""
    states = {}
    for path in sorted(folder.glob(f"*{DROP_SUFFIX}")):
        if path.name.startswith(".") or not path.is_file():
            continue
        stat = path.stat()
        known = seen.get(path.name)
        if known and (known.size, known.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            states[path.name] = known
        else:
            states[path.name] = FileState(stat.st_size, stat.st_mtime_ns, file_sha256(path))
    return states


def symbols_in(path: Path) -> tuple[str, ...]:
    """The symbols a file holds: its ``symbol`` column when it has one, else its name (AAPL.csv)."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        header = next(csv.reader(fh), [])
    column = _positions(header).get("symbol")
    if column is None:
        symbol = path.stem.strip().upper()
        if not is_valid_symbol(symbol):
            raise DropFileError(path.name, RULE_BAD_FILE_NAME, f"{symbol!r} is not a ticker: name a one-symbol file "
                                "after its symbol (AAPL.csv) or add a `symbol` column")
        return (symbol,)
    try:
        values = pd.read_csv(path, usecols=[column], dtype=str, keep_default_na=False).iloc[:, 0]
    except (ValueError, pd.errors.ParserError) as exc:
        raise DropFileError(path.name, "malformed_row", f"its `symbol` column cannot be read ({exc}); "
                            "fix the rows named and drop it again") from exc
    return tuple(sorted({s.strip().upper() for s in values if s.strip()}))


@contextmanager
def staged(folder: Path, files: Mapping[str, str]) -> Iterator[Path]:
    """A private folder holding copies of ``files`` (name -> sha256), each verified by hash."""
    with tempfile.TemporaryDirectory(prefix="alphatwin-drop-") as tmp:
        for name, expected in files.items():
            copy = Path(tmp) / name
            try:
                shutil.copyfile(folder / name, copy)
            except FileNotFoundError as exc:
                raise DropFileError(name, RULE_CHANGED_SINCE_SEEN, f"was removed from {folder} before the run read "
                                    "it; drop it again") from exc
            if file_sha256(copy) != expected:
                raise DropFileError(name, RULE_CHANGED_SINCE_SEEN, "changed after the sensor saw it; the sensor "
                                    "requests a new run for the new content on its next tick")
        yield Path(tmp)


def inspect_file(folder: Path, name: str, sha256: str, window: pd.DatetimeIndex) -> Inspection:
    """Read one file the way ingestion will, within ``window`` (the partition sessions).

    Raises ``DropFileError`` when it yields no bar at all, naming the first rule it broke.
    """
    symbols = symbols_in(folder / name)
    with staged(folder, {name: sha256}) as copy:
        result = CsvFolderSource(copy).fetch(symbols, window)
    if result.bars.empty:
        problems = [r for r in result.rejections if r.rule != RULE_NO_DATA]  # no_data names the private copy
        if problems:
            raise DropFileError(name, problems[0].rule, problems[0].reason)
        span = f"{window[0]:%Y-%m-%d}..{window[-1]:%Y-%m-%d}" if len(window) else "none"
        raise DropFileError(name, RULE_OUTSIDE_PARTITIONS, f"has no row for {', '.join(symbols)} on any partition "
                            f"session ({span}); check its dates (ALPHATWIN_START sets the first partition)")
    dates = pd.DatetimeIndex(result.bars["date"])
    return Inspection(name, sha256, tuple(sorted(result.bars["symbol"].unique())),
                      sessions_between(dates.min(), dates.max()), len(result.bars), len(result.rejections))


class _Overlay(BarSource):
    """Stored raw bars with the dropped rows laid over them (same symbol and session replaced)."""

    name = "csv"

    def __init__(self, dropped: FetchResult, stored: pd.DataFrame, folder: Path):
        self.dropped, self.stored, self.folder = dropped, stored, folder

    def describe(self) -> str:
        return f"drop folder {self.folder} over stored {RAW}"

    def fetch(self, symbols, sessions) -> FetchResult:
        new = self.dropped.bars
        replaced = pd.MultiIndex.from_frame(self.stored[["symbol", "date"]]).isin(
            pd.MultiIndex.from_frame(new[["symbol", "date"]]))
        bars = to_canonical(pd.concat([self.stored[~replaced][list(new.columns)], new], ignore_index=True))
        return FetchResult(bars=bars, rejections=self.dropped.rejections, warnings=self.dropped.warnings)


def ingest_dropped(store: TableStore, folder: Path, files: Mapping[str, str], sessions: pd.DatetimeIndex,
                   universe: list[str], *, run_id: str | None = None) -> tuple[IngestReport, list[str]]:
    """Merge ``files`` (name -> sha256) into the raw partitions of ``sessions``.

    Only universe symbols are taken; the others are returned so the caller can say why they were
    ignored. Rejected rows go to the rejected-inputs log like any other ingestion's.
    """
    held = sorted({s for name in files for s in symbols_in(folder / name)})
    outside = [s for s in held if s not in set(universe)]
    wanted = [s for s in held if s in set(universe)]
    if not wanted:
        raise DropFileError(", ".join(files), "not_in_universe", f"hold(s) only {', '.join(held) or 'no'} "
                            "symbol(s) outside the universe; add them to ALPHATWIN_UNIVERSE and materialise universe")
    with staged(folder, files) as copy:
        dropped = CsvFolderSource(copy).fetch(wanted, sessions)
    stored = store.read_partitions(RAW, sessions[0], sessions[-1])
    stored = empty_bars() if stored.empty else stored
    keep = sorted(set(stored["symbol"]) | set(wanted))
    report = ingest(_Overlay(dropped, stored, folder), store, keep, sessions, table=RAW, run_id=run_id)
    return report, outside
