"""Per-symbol history index of a session-partitioned table: fast reads of a few symbols' long history.

The session files stay the table (every write and every one-session read goes to them); this is a
derived copy for reads by symbol. ``compact`` writes one file per table and calendar year,
``<table>/_by_symbol/<YYYY>.arrow``: an Arrow IPC file holding one record batch per symbol (in
symbol order), each with that symbol's rows of the year in session order, plus two hidden columns
(``__session``, ``__row``: the session file and the row within it each row came from). Its schema
metadata records the identity (inode, mtime_ns, size: ``file_cache.file_identity``) of every
session file it was built from and the symbol of each batch.

``read_symbols`` serves a session from the index only while that session's file still has the
recorded identity (one ``stat`` per file); any other session (rewritten, added or deleted since
the compaction) is read from its file. So a read is never stale, and it returns exactly the rows,
order and types of the per-session read. Arrow IPC rather than Parquet: a batch is found by number
and memory-mapped without decoding, where a Parquet file with one row group per symbol spends the
read parsing a footer that lists every row group's column chunks (see benchmarks/README.md).
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from contextlib import contextmanager
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from alphatwin_pipelines.atomic import atomic_write_bytes
from alphatwin_pipelines.file_cache import file_identity
from alphatwin_pipelines.objectstore import is_remote, listing, read_many

INDEX_DIR = "_by_symbol"
SESSION_COLUMN, ROW_COLUMN = "__session", "__row"
_META_KEY = b"alphatwin.symbol_index"
_FORMAT = 1
#: Years read at once from an object store (a notebook reading 21 years pays one round trip, not 21).
REMOTE_READERS = 8


def index_dir(table_dir: Path) -> Path:
    return table_dir / INDEX_DIR


def index_path(table_dir: Path, year: int) -> Path:
    return index_dir(table_dir) / f"{year:04d}.arrow"


def _day(key: str) -> int:
    return int(np.datetime64(key, "D").astype(np.int64))


@dataclass
class _Index:
    """One year's index file, opened (memory-mapped) with its record of sources."""

    reader: pa.ipc.RecordBatchFileReader
    sources: dict[str, tuple]  # session key -> identity of the file it was built from
    batch_of: dict[str, int]  # symbol -> record batch number

    @classmethod
    def open(cls, path: Path) -> _Index | None:
        try:
            # on an object store, a file handle: the footer and each batch read are ranged GETs
            source = path.fs.open(path.path, "rb", block_size=2**20) if is_remote(path) else pa.memory_map(str(path))
            reader = pa.ipc.open_file(source)
        except (FileNotFoundError, pa.ArrowInvalid):  # none yet, or not an index: the session files serve
            return None
        record = json.loads((reader.schema.metadata or {}).get(_META_KEY, b"{}"))
        if record.get("format") != _FORMAT:
            return None  # another layout: the session files serve the year until the next compaction
        return cls(reader, {key: tuple(ident) for key, *ident in record["sources"]},
                   {symbol: i for i, symbol in enumerate(record["symbols"])})

    def current(self, table_dir: Path, keys: Sequence[str], found: dict | None = None) -> list[str]:
        """The sessions among ``keys`` whose files are unchanged since the index was built (remote:
        against ``found``, the files' identities from one listing, when the caller has it)."""
        if is_remote(table_dir):
            found = _identities(table_dir, keys) if found is None else found
            return [key for key in keys if key in self.sources and found.get(key) == self.sources[key]]
        out, prefix = [], os.path.join(table_dir, "")  # plain strings: a Path per file costs more than its stat
        for key in keys:
            recorded = self.sources.get(key)
            try:
                if recorded is not None and file_identity(f"{prefix}{key}.parquet") == recorded:
                    out.append(key)
            except FileNotFoundError:
                pass
        return out


def read_symbols(table_dir: Path, keys: Sequence[str], symbols: Sequence[str], columns=None) -> pa.Table | None:
    """The stored rows of ``symbols`` in the sessions ``keys`` (sorted partition keys), as the
    per-session read gives them; None when no index file serves any of these sessions."""
    if not index_dir(table_dir).is_dir():
        return None
    wanted = sorted({s.upper() for s in symbols})
    parts, fresh, schema = [], [], None
    found = _identities(table_dir, keys) if is_remote(table_dir) else None  # one listing for every year
    years = _by_year(keys).items()
    read = functools.partial(_read_year, table_dir, wanted=wanted, columns=columns, found=found)
    if is_remote(table_dir):  # each year's footer and batches are round trips: the years go side by side
        with ThreadPoolExecutor(REMOTE_READERS) as pool:
            results = list(pool.map(lambda item: read(*item), years))
    else:
        results = [read(year, year_keys) for year, year_keys in years]
    for part, year_fresh, year_schema in results:
        fresh += year_fresh
        schema = schema or year_schema
        if part is not None:
            parts.append(part)
    if schema is None:
        return None
    if fresh:
        fresh = sorted(fresh)
        part = _read_fresh(table_dir, fresh, wanted, schema)
        # the per-session read takes its types from the first session's file (pandas' datetime unit can drift)
        parts.insert(0 if fresh[0] == keys[0] else len(parts), part)
    table = _concat(parts) if parts else schema.empty_table()
    keys_ = np.asarray(table.column(SESSION_COLUMN), dtype=np.int64) << 32 | np.asarray(table.column(ROW_COLUMN),
                                                                                          dtype=np.int64)
    if len(keys_) > 1 and not (np.diff(keys_) > 0).all():
        table = table.take(np.argsort(keys_, kind="stable"))
    return table.drop_columns([SESSION_COLUMN, ROW_COLUMN]).replace_schema_metadata(None)


def _read_year(table_dir, year: int, year_keys: list[str], *, wanted, columns, found):
    """(the index's rows of ``wanted`` in the year's current sessions or None, the sessions its files
    must serve, the schema read) for one year."""
    index = _Index.open(index_path(table_dir, year))
    names = None if index is None else index.reader.schema.names
    if index is None or (columns is not None and not set(columns) <= set(names)):
        return None, list(year_keys), None
    current = index.current(table_dir, year_keys, found)
    fresh = sorted(set(year_keys) - set(current))
    if not current:
        return None, fresh, None
    keep = [*(columns if columns is not None else [n for n in names if n not in (SESSION_COLUMN, ROW_COLUMN)]),
            SESSION_COLUMN, ROW_COLUMN]
    schema = pa.schema([index.reader.schema.field(n) for n in keep])
    batches = [index.reader.get_batch(index.batch_of[s]) for s in wanted if s in index.batch_of]
    if keep != names:
        batches = [batch.select(keep) for batch in batches]
    if not batches:
        return None, fresh, schema
    part = pa.Table.from_batches(batches)
    if len(current) < len(index.sources) or len(current) < len(year_keys):
        days = pa.array([_day(k) for k in current], pa.int32())
        part = part.filter(pc.is_in(part.column(SESSION_COLUMN), value_set=days))
    return part, fresh, schema


def _concat(parts: list[pa.Table]) -> pa.Table:
    """The parts as one table with the first part's types where the others can be cast to them."""
    first = parts[0].schema
    same = [p.cast(first) if p.schema.names == first.names and not p.schema.equals(first) else p for p in parts]
    return pa.concat_tables(same, promote_options="default")


def _read_fresh(table_dir: Path, keys: list[str], symbols: list[str], schema: pa.Schema) -> pa.Table:
    """The files of ``keys`` filtered to ``symbols``, with the hidden columns (a row's number is its
    place among the kept rows of its file: only the order within a session matters)."""
    import pyarrow.dataset as ds  # slow to import: only when a read needs it

    columns = [n for n in schema.names if n not in (SESSION_COLUMN, ROW_COLUMN)]
    out, counts = [], {}
    with _dataset(table_dir, keys) as dataset:
        tagged_batches = list(dataset.scanner(columns=columns, filter=ds.field("symbol").isin(symbols)).scan_batches())
    for tagged in tagged_batches:
        batch = tagged.record_batch
        key = Path(tagged.fragment.path).stem
        first = counts.get(key, 0)
        counts[key] = first + batch.num_rows
        out.append(pa.Table.from_batches([batch]).append_column(
            SESSION_COLUMN, pa.array(np.full(batch.num_rows, _day(key), np.int32))).append_column(
            ROW_COLUMN, pa.array(np.arange(first, first + batch.num_rows, dtype=np.int32))))
    return pa.concat_tables(out, promote_options="default") if out else schema.empty_table()


def _identities(table_dir, keys: Sequence[str]) -> dict[str, tuple]:
    """Session key -> identity of its file now (missing files left out): one ``stat`` per file, or on
    an object store one listing of the table's folder (ETag and size)."""
    if is_remote(table_dir):
        names = listing(table_dir)
        return {k: names[f"{k}.parquet"] for k in keys if f"{k}.parquet" in names}
    found = {}
    for key in keys:
        try:
            found[key] = file_identity(table_dir / f"{key}.parquet")
        except FileNotFoundError:
            pass
    return found


@contextmanager
def _dataset(table_dir, keys: Sequence[str]):
    """A Parquet dataset over the session files of ``keys``. On an object store the files are first
    fetched concurrently into a local temporary folder (one GET each): a dataset over the store
    itself reads file after file in several ranged requests each."""
    import pyarrow.dataset as ds

    if not is_remote(table_dir):
        yield ds.dataset([str(table_dir / f"{k}.parquet") for k in keys], format="parquet")
        return
    with tempfile.TemporaryDirectory(prefix="alphatwin-fetch-") as local:
        payloads = read_many([table_dir / f"{k}.parquet" for k in keys])
        for key, payload in zip(keys, payloads):
            Path(local, f"{key}.parquet").write_bytes(payload)
        yield ds.dataset([str(Path(local, f"{k}.parquet")) for k in keys], format="parquet")


def _by_year(keys: Sequence[str]) -> dict[int, list[str]]:
    years: dict[int, list[str]] = {}
    for key in keys:
        years.setdefault(int(key[:4]), []).append(key)
    return years


@dataclass
class CompactionReport:
    table: str
    built: list[int] = field(default_factory=list)  # years whose index was (re)written
    current: list[int] = field(default_factory=list)  # years whose index already matched every file
    removed: list[int] = field(default_factory=list)  # index files of years without sessions any more
    skipped: dict[int, str] = field(default_factory=dict)  # years left to their session files, and why
    sessions: int = 0  # sessions the index serves after the compaction
    bytes: int = 0  # size of the index files


def compact(table_dir: Path, keys: Sequence[str], table: str = "") -> CompactionReport:
    """Bring ``<table_dir>/_by_symbol`` up to date with the session files ``keys`` (all stored ones).

    A year is rebuilt only when a file of it changed, appeared or went; the rebuild is a pure
    function of the files and their identities, so re-running gives the same bytes. Each index
    file is replaced atomically: a killed compaction leaves the previous index, which reads stay
    correct with (sessions changed since are read from their files)."""
    report = CompactionReport(table or table_dir.name)
    years = _by_year(sorted(keys))
    found = _identities(table_dir, keys) if is_remote(table_dir) else None  # one listing for every year
    for year, year_keys in years.items():
        path = index_path(table_dir, year)
        index = _Index.open(path)
        if index is not None and len(index.sources) == len(year_keys) and \
                len(index.current(table_dir, year_keys, found)) == len(year_keys):
            report.current.append(year)
        else:
            built = _build(table_dir, year_keys)
            if isinstance(built, str):
                report.skipped[year] = built
                path.unlink(missing_ok=True)
                continue
            atomic_write_bytes(path, lambda tmp, built=built: _write(tmp, *built))
            report.built.append(year)
        report.sessions += len(year_keys)
        report.bytes += path.stat().st_size
    folder = index_dir(table_dir)
    for path in sorted(folder.glob("*.arrow")) if folder.is_dir() else []:
        if path.stem.isdigit() and int(path.stem) not in years:
            path.unlink()
            report.removed.append(int(path.stem))
    return report


def _build(table_dir: Path, keys: list[str]) -> tuple[pa.Table, list] | str:
    """The year's rows sorted by (symbol, session, row) with the identities they came from, or why not."""
    paths = [table_dir / f"{k}.parquet" for k in keys]
    found = _identities(table_dir, keys)
    before = [list(found[k]) for k in keys]
    with _dataset(table_dir, keys) as dataset:
        fragments = list(dataset.get_fragments())
        first = fragments[0].physical_schema
        if "symbol" not in first.names:
            return f"no 'symbol' column in {paths[0]}"
        for path, fragment in zip(paths, fragments):
            if not fragment.physical_schema.equals(first):
                return f"{path.name} has another schema than {paths[0].name}: the year is read from its session files"
        data = dataset.to_table()
        rows = [f.metadata.num_rows for f in fragments]
    sessions = np.repeat(np.array([_day(k) for k in keys], np.int32), rows)
    within = np.concatenate([np.arange(n, dtype=np.int32) for n in rows]) if rows else np.array([], np.int32)
    data = data.append_column(SESSION_COLUMN, pa.array(sessions)).append_column(ROW_COLUMN, pa.array(within))
    after = _identities(table_dir, keys)
    unchanged = [k in after and b == list(after[k]) for k, b in zip(keys, before)]
    if not all(unchanged):  # rewritten while read: leave those sessions to their files
        gone = pa.array([_day(k) for k, same in zip(keys, unchanged) if not same], pa.int32())
        data = data.filter(pc.invert(pc.is_in(data.column(SESSION_COLUMN), value_set=gone)))
    data = data.filter(pc.is_valid(data.column("symbol")))
    order = pc.sort_indices(data, [("symbol", "ascending"), (SESSION_COLUMN, "ascending"), (ROW_COLUMN, "ascending")])
    data = data.take(order).combine_chunks()
    sources = [[k, *b] for k, b, same in zip(keys, before, unchanged) if same]
    return data, sources


def _write(tmp: str, data: pa.Table, sources: list) -> None:
    counts = pc.value_counts(data.column("symbol")) if data.num_rows else pa.StructArray.from_arrays(
        [pa.array([], pa.string()), pa.array([], pa.int64())], ["values", "counts"])
    symbols = counts.field("values").to_pylist()
    record = {"format": _FORMAT, "symbols": symbols, "sources": sources}
    schema = data.schema.with_metadata({**(data.schema.metadata or {}), _META_KEY: json.dumps(record).encode()})
    offsets = np.r_[0, np.cumsum(counts.field("counts").to_numpy(zero_copy_only=False))]
    with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for lo, hi in zip(offsets[:-1], offsets[1:]):  # exactly one batch per symbol: batch i is symbols[i]
            rows = data.slice(int(lo), int(hi - lo))
            writer.write_batch(pa.RecordBatch.from_arrays([c.combine_chunks() for c in rows.columns], schema=schema))


def describe(table_dir: Path, keys: Sequence[str]) -> dict | None:
    """What the index holds for the inventory: years, sessions it serves now, size; None without one."""
    folder = index_dir(table_dir)
    if not folder.is_dir():
        return None
    serving, years, size = 0, 0, 0
    found = _identities(table_dir, keys) if is_remote(table_dir) else None
    for year, year_keys in _by_year(keys).items():
        index = _Index.open(index_path(table_dir, year))
        if index is not None:
            years += 1
            serving += len(index.current(table_dir, year_keys, found))
            size += index_path(table_dir, year).stat().st_size
    return dict(years=years, serving=serving, sessions=len(keys), bytes=size)
