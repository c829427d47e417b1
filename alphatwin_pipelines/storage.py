"""Parquet table storage under one data directory (a local folder or an object-store prefix).

Layout: ``<data_dir>/<table>/<YYYY-MM-DD>.parquet`` for session-partitioned tables and
``<data_dir>/<table>.parquet`` for whole tables. Every write goes to a temporary file in the
destination folder and is moved into place with ``os.replace`` (on an object store: a local
temporary file uploaded whole, see ``objectstore``), so a reader (or a crash) sees the old file
or the new one, never half of one. How one file is encoded and staged: ``parquet_files``.
"""

from __future__ import annotations

import functools
import io
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from alphatwin_pipelines.atomic import _temps_by_target, atomic_write_bytes, fsync_dir
from alphatwin_pipelines.data_dir import DATA_DIR_ENV, resolve_data_dir  # noqa: F401 (re-exported)
from alphatwin_pipelines.file_cache import FileCache
from alphatwin_pipelines.objectstore import arrow_filesystem, is_remote, listing, read_many
from alphatwin_pipelines.parquet_files import _upload, _write_temp, write_parquet
from alphatwin_pipelines.partition_keys import key_sessions, session_key, session_keys
from alphatwin_pipelines.schema import arrow_to_frame
from alphatwin_pipelines.symbol_index import CompactionReport, compact, read_symbols

REJECTED_INPUTS_LOG = "rejected_inputs.jsonl"
#: On an object store: one object per append (``append_rejections``).
REJECTED_INPUTS_DIR = "rejected_inputs"
#: Decoded files shared by the stages that run in this process (see ``file_cache``).
FILE_CACHE = FileCache()

#: Threads that encode and write a batch's files: pyarrow releases the GIL for both, and each
#: file's bytes do not depend on which thread wrote it.
WRITE_THREADS = 2
#: Writes queued ahead of the threads; the producer waits beyond this, bounding the memory
#: held by tables not yet written.
_MAX_QUEUED = 8


class TableStore:
    """Reads and writes the project's Parquet tables under ``data_dir``."""

    def __init__(self, data_dir: str | os.PathLike | None = None):
        self.data_dir = resolve_data_dir(data_dir)
        self.remote = is_remote(self.data_dir)
        self._staging: str | None = None
        self._pending: list[tuple[Future, Path]] | None = None  # (writer's temporary or None, final path)
        self._stale: dict[Path, dict[str, list[Path]]] = {}
        self._pool: ThreadPoolExecutor | None = None

    @contextmanager
    def batch(self):
        """Write many files as one unit: all temporary files first, one ``os.sync``, then the renames.

        Every file is still complete on disk before its ``os.replace`` (so no reader ever sees
        a torn file), but a backfill pays one sync instead of an fsync per file. Files are
        encoded and written on ``WRITE_THREADS`` threads. If the block (or any write) raises,
        no file of the batch is replaced at all. On an object store the temporaries are local and
        the commit uploads each one whole (``objectstore``): same guarantees, no rename.
        """
        if self._pending is not None:
            yield self
            return
        self._pending, self._stale = [], {}
        self._staging = tempfile.mkdtemp(prefix="alphatwin-upload-") if self.remote else None
        self._pool = ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="parquet-write")
        try:
            yield self
            # in the order written, so a path written twice keeps the last; None: unchanged
            replaced = [(future.result(), final) for future, final in self._pending]
        except BaseException:
            self._pool.shutdown(wait=True, cancel_futures=True)
            for future, _ in self._pending:
                if not future.cancelled() and future.exception() is None and future.result():
                    Path(future.result()).unlink(missing_ok=True)
            raise
        else:
            self._pool.shutdown(wait=True)
            replaced = [(tmp, final) for tmp, final in replaced if tmp is not None]
            if self.remote:
                _upload(replaced)
                return
            if replaced:
                os.sync()
            for tmp, final in replaced:
                os.replace(tmp, final)
            for folder in sorted({final.parent for _, final in replaced}):
                fsync_dir(folder)
        finally:
            if self._staging is not None:
                shutil.rmtree(self._staging, ignore_errors=True)
            self._pending, self._pool, self._stale, self._staging = None, None, {}, None

    def _write(self, path: Path, data: pa.Table) -> Path:
        if self._pending is None:
            write_parquet(path, data)
            return path
        folder = path.parent
        if folder not in self._stale:  # once per folder and batch
            if self.remote:  # what each object holds now, to skip uploading unchanged bytes
                self._stale[folder] = listing(folder)
            else:
                folder.mkdir(parents=True, exist_ok=True)
                self._stale[folder] = _temps_by_target(folder)
        if self.remote:
            stale, found = (), self._stale[folder].get(path.name)
        else:
            stale, found = self._stale[folder].pop(path.name, ()), None
        if len(self._pending) >= _MAX_QUEUED:  # back-pressure: wait for the write _MAX_QUEUED back
            self._pending[-_MAX_QUEUED][0].result()
        self._pending.append((self._pool.submit(_write_temp, path, data, stale, found, self._staging), path))
        return path

    def write_sessions(self, table: str, frame: pd.DataFrame, sessions, *, key: str = "date", to_arrow=None) -> dict:
        """Replace the partition of every session in ``sessions`` with ``frame``'s rows of that session.

        The frame is converted to Arrow once and sliced per session (converting per partition
        costs more than writing). ``key`` names the column holding each row's session, and
        ``to_arrow`` may reorder rows as long as it keeps them grouped by session. Sessions
        without rows get an empty file with the same schema. Returns rows written per session.
        """
        return self.write_tables_by_session({table: frame}, sessions, key=key, to_arrow=to_arrow)[table]

    def write_tables_by_session(self, frames: dict[str, pd.DataFrame], sessions, *, key: str = "date",
                                to_arrow=None) -> dict[str, dict]:
        """``write_sessions`` for several tables at once, session by session across the tables.

        Creating a file holds its folder's lock: two threads creating files in one folder take
        turns, in two folders they run side by side. Interleaving the tables keeps the writer
        threads in different folders.
        """
        from alphatwin_pipelines.schema import frame_to_arrow

        sessions = pd.DatetimeIndex(sessions)
        wanted = sessions.to_numpy(dtype="datetime64[ns]")
        sliced = {}
        for table, frame in frames.items():
            data = (to_arrow or frame_to_arrow)(frame.sort_values(key, kind="stable"))
            days = pd.to_datetime(data.column(key).to_pandas()).to_numpy(dtype="datetime64[ns]")
            sliced[table] = data, np.searchsorted(days, wanted, side="left"), np.searchsorted(days, wanted, side="right")
        counts: dict[str, dict] = {table: {} for table in frames}
        with self.batch():
            for k, session in enumerate(sessions):
                for table, (data, lo, hi) in sliced.items():
                    self.write_partition(table, session, data.slice(lo[k], hi[k] - lo[k]))
                    counts[table][session] = int(hi[k] - lo[k])
        return counts

    # -- paths -----------------------------------------------------------------------------
    def table_dir(self, table: str) -> Path:
        return self.data_dir / table

    def partition_path(self, table: str, session) -> Path:
        return self.table_dir(table) / f"{session_key(session)}.parquet"

    def whole_path(self, table: str) -> Path:
        return self.data_dir / f"{table}.parquet"

    # -- partitioned tables ------------------------------------------------------------------
    def write_partition(self, table: str, session, data: pa.Table) -> Path:
        """Replace one session's file whole."""
        return self._write(self.partition_path(table, session), data)

    def stored_sessions(self, table: str) -> pd.DatetimeIndex:
        folder = self.table_dir(table)
        if self.remote:
            names = listing(folder)
        elif folder.is_dir():
            names = [entry.name for entry in os.scandir(folder)]
        else:
            names = []
        keys = sorted(n[: -len(".parquet")] for n in names if n.endswith(".parquet") and not n.startswith("."))
        return key_sessions(keys)

    def read_partitions(
        self,
        table: str,
        start=None,
        end=None,
        symbols: Sequence[str] | None = None,
        columns: Sequence[str] | None = None,
        cached: bool = False,
    ) -> pd.DataFrame:
        """Concatenate the stored sessions in [start, end], optionally for some symbols.

        ``cached`` keeps the decoded files in this process's ``FILE_CACHE`` for the next
        reader of the same files (used for the bars every stage reads, see ``file_cache``).
        A read by ``symbols`` goes through the table's per-symbol index where it is current
        (``symbol_index``): a few symbols' whole history without opening every session's file.
        """
        sessions = self.stored_sessions(table)
        if start is not None:
            sessions = sessions[sessions >= pd.Timestamp(start)]
        if end is not None:
            sessions = sessions[sessions <= pd.Timestamp(end)]
        if symbols and len(sessions):
            keys = session_keys(sessions)
            indexed = read_symbols(self.table_dir(table), keys, symbols, columns)
            if indexed is not None:
                return arrow_to_frame(indexed)
        paths = [self.partition_path(table, s) for s in sessions]
        if cached and paths and not symbols and not self.remote:
            return arrow_to_frame(FILE_CACHE.read(paths, columns))
        return self._read_files(paths, symbols, columns)

    def compact_by_symbol(self, table: str) -> CompactionReport:
        """Bring ``table``'s per-symbol index (``<table>/_by_symbol/<YYYY>.arrow``) up to date."""
        if not self.table_dir(table).is_dir():
            raise FileNotFoundError(f"table '{table}' has no partitions under {self.data_dir}: materialise it first")
        return compact(self.table_dir(table), session_keys(self.stored_sessions(table)), table)

    # -- whole tables ------------------------------------------------------------------------
    def write_table(self, table: str, data: pa.Table) -> Path:
        return self._write(self.whole_path(table), data)

    def read_table(self, table: str, symbols=None, columns=None) -> pd.DataFrame:
        path = self.whole_path(table)
        if not path.exists():
            raise FileNotFoundError(
                f"table '{table}' has not been materialised yet: {path} does not exist"
            )
        return self._read_files([path], symbols, columns)

    def read_schema(self, table: str, session) -> pa.Schema:
        """The Arrow schema of one stored partition (its footer only)."""
        path = self.partition_path(table, session)
        return pq.read_schema(path.path, filesystem=arrow_filesystem(path)) if self.remote else pq.read_schema(path)

    def _read_files(self, paths: Iterable[Path], symbols, columns) -> pd.DataFrame:
        paths = list(paths)
        if not paths:
            return pd.DataFrame(columns=list(columns) if columns else None)
        filters = [("symbol", "in", [s.upper() for s in symbols])] if symbols else None
        if self.remote:
            wanted = list(columns) if columns else None
            tables = [pq.read_table(pa.BufferReader(b), columns=wanted, filters=filters) for b in read_many(paths)]
            return arrow_to_frame(pa.concat_tables(tables, promote_options="default"))
        dataset = pq.ParquetDataset([str(p) for p in paths], filters=filters)
        return arrow_to_frame(dataset.read(columns=list(columns) if columns else None))

    # -- the rejected-inputs log ---------------------------------------------------------------
    @property
    def rejected_log_path(self) -> Path:
        return self.data_dir / REJECTED_INPUTS_LOG

    def append_rejections(self, records: Sequence[dict]) -> None:
        """Append records to the persistent, append-only rejected-inputs log (JSON lines).

        One ``write`` on an ``O_APPEND`` descriptor, so concurrent runs never interleave
        half-lines. An object cannot be appended to: on an object store each call writes its own
        object under ``rejected_inputs/``, named by time, which the reader concatenates in order.
        """
        if not records:
            return
        payload = "".join(json.dumps(r, default=str, sort_keys=True) + "\n" for r in records).encode()
        if self.remote:
            name = f"{pd.Timestamp.now(tz='UTC'):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:12]}.jsonl"
            atomic_write_bytes(self.data_dir / REJECTED_INPUTS_DIR / name, lambda tmp: Path(tmp).write_bytes(payload))
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.rejected_log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)

    def read_rejections(self) -> pd.DataFrame:
        if self.remote:
            folder = self.data_dir / REJECTED_INPUTS_DIR
            lines = b"".join(read_many([folder / name for name in sorted(listing(folder))]))
            return pd.read_json(io.BytesIO(lines), lines=True, dtype=False) if lines else pd.DataFrame()
        path = self.rejected_log_path
        if not path.exists():
            return pd.DataFrame()
        return pd.read_json(path, lines=True, dtype=False)
