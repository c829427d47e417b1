"""Decoded Parquet files kept in memory while they are unchanged on disk.

One run materialises several assets in one process, and they read the same partitions: the
feature stage and the scanner both read five years of cleaned bars and every factor file in
a backfill (mostly decoding thousands of small files). An entry is keyed by the
file's path and identity (inode, modification time, size): every write replaces a file with
a new inode, so a replaced file is never served from memory. Entries hold the columns that
were read; a request for other columns reads the file again. Least recently used entries go
first once the cache holds ``max_bytes``.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

#: Enough for five years of 1000 symbols' cleaned bars plus their factors.
DEFAULT_MAX_BYTES = 512 * 2**20


def file_identity(path: Path) -> tuple:
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns, st.st_size


class FileCache:
    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[tuple, frozenset | None, pa.Table]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def read(self, paths: Sequence[Path], columns: Sequence[str] | None = None) -> pa.Table:
        """The files' rows in order, as ``ds.dataset(paths).to_table(columns)`` would give them."""
        wanted = frozenset(columns) if columns is not None else None
        identities = [file_identity(p) for p in paths]
        tables: list[pa.Table | None] = [self._get(str(p), ident, wanted) for p, ident in zip(paths, identities)]
        missing = [i for i, t in enumerate(tables) if t is None]
        if missing:
            for i, table in zip(missing, self._decode([paths[i] for i in missing], columns)):
                tables[i] = table
                if file_identity(paths[i]) == identities[i]:  # not replaced while it was read
                    self._put(str(paths[i]), identities[i], wanted, table)
        self.hits += len(paths) - len(missing)
        self.misses += len(missing)
        table = pa.concat_tables(tables, promote_options="default")
        return table.select(list(columns)) if columns is not None else table

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    @staticmethod
    def _decode(paths: list[Path], columns) -> list[pa.Table]:
        """One multi-threaded scan over all the files (cheaper than file by file), cut back into files."""
        import pyarrow.dataset as ds  # slow to import: only when a stage reads, not when Dagster loads the code

        dataset = ds.dataset([str(p) for p in paths], format="parquet")
        table = dataset.to_table(columns=list(columns) if columns is not None else None)
        rows = [fragment.metadata.num_rows for fragment in dataset.get_fragments()]
        out, offset = [], 0
        for n in rows:
            out.append(table.slice(offset, n))
            offset += n
        if offset != table.num_rows:
            raise RuntimeError(f"read {table.num_rows} rows from {len(paths)} files whose footers list {offset}")
        return out

    def _get(self, key: str, identity: tuple, wanted: frozenset | None) -> pa.Table | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != identity or not (entry[1] is None or (wanted is not None and wanted <= entry[1])):
                return None
            self._entries.move_to_end(key)
            return entry[2]

    def _put(self, key: str, identity: tuple, wanted: frozenset | None, table: pa.Table) -> None:
        size = table.nbytes
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[2].nbytes
            self._entries[key] = (identity, wanted, table)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, _, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted.nbytes
