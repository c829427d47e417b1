"""One Parquet file of a table: fixed encoding (the same rows always give the same bytes) and the
atomic ways to put it in place, locally or on an object store (used by ``storage.TableStore``)."""

from __future__ import annotations

import functools
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from alphatwin_pipelines.atomic import _new_temp, atomic_write_bytes
from alphatwin_pipelines.objectstore import holds, is_remote, put_file

# Fixed writer settings: the same table always serialises to the same bytes. Dictionary
# encoding pays off only for strings (symbols, sources, flags); on floats it costs time for
# nothing. Codecs per column: zstd level 1 (as small as level 3, faster) for strings, integers
# and timestamps, which repeat; snappy for floats, whose mantissas are close to random, so zstd
# saves little space there for much more CPU.
_PARQUET_OPTIONS = dict(write_statistics=True)


@functools.lru_cache(maxsize=64)
def _parquet_options(schema: pa.Schema) -> dict:
    strings = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    codecs = {f.name: "snappy" if pa.types.is_floating(f.type) else "zstd" for f in schema}
    levels = {name: 1 for name, codec in codecs.items() if codec == "zstd"}
    return {**_PARQUET_OPTIONS, "use_dictionary": strings, "compression": codecs, "compression_level": levels}


def _holds(path: Path, payload: pa.Buffer, found) -> bool:
    """Whether ``path`` exists with exactly these bytes (``found``: its listed identity, remote only)."""
    if is_remote(path):
        return holds(found, payload)
    try:
        if os.stat(path).st_size != payload.size:
            return False
        with open(path, "rb") as fh:
            return pa.py_buffer(fh.read()).equals(payload)
    except FileNotFoundError:
        return False


def _write_temp(path: Path, data: pa.Table, stale, found=None, staging: str | None = None) -> str | None:
    """Encode ``data`` and write it to a new temporary file beside ``path`` (on a writer thread;
    remote: in the local ``staging`` folder); the temporary's path, or None when ``path`` already
    holds exactly these bytes (a re-run on unchanged inputs then creates, renames and frees no file)."""
    sink = pa.BufferOutputStream()
    pq.write_table(data, sink, **_parquet_options(data.schema))
    payload = sink.getvalue()
    if _holds(path, payload, found):
        for old in stale:
            old.unlink(missing_ok=True)
        return None
    if staging is not None:
        fd, tmp = tempfile.mkstemp(suffix=".parquet", dir=staging)
        os.close(fd)
    else:
        tmp = _new_temp(path, stale)
    try:
        with open(tmp, "wb") as fh:
            fh.write(memoryview(payload))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


#: Concurrent uploads when a batch commits to an object store (each is a network round trip).
UPLOAD_THREADS = 8


def _upload(replaced: list[tuple[str, Path]]) -> None:
    """Upload each staged file whole onto its object; a path written twice keeps the last."""
    last = {str(final): (tmp, final) for tmp, final in replaced}
    with ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="object-upload") as pool:
        for future in [pool.submit(put_file, tmp, final) for tmp, final in last.values()]:
            future.result()


def write_parquet(path: Path, table: pa.Table) -> None:
    atomic_write_bytes(path, lambda tmp: pq.write_table(table, tmp, **_parquet_options(table.schema)))


