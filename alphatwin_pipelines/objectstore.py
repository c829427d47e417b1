"""The data directory on an S3-compatible object store: ``ALPHATWIN_DATA_DIR=s3://bucket/prefix``.

The endpoint and credentials come from the environment, as for any AWS client:
``AWS_ENDPOINT_URL`` (MinIO, moto, Ceph ...; unset means AWS itself), ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY`` and ``AWS_DEFAULT_REGION``. Nothing about them is stored here.

Paths under such a data directory are ``upath.UPath`` objects: ``/``, ``name``, ``exists()``,
``read_bytes()`` and ``iterdir()`` work as on a local ``Path``. What differs is how a file is
replaced. An object PUT is atomic: a reader sees the old object or the new one, never part of one,
and a writer killed before its upload completes (a multipart upload included) leaves the old
object in place. So a remote write stages its bytes in a local temporary file and uploads it
whole (``put_file``); there is no rename and no directory to sync.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

#: URL schemes that name an object store rather than a local folder.
REMOTE_SCHEMES = ("s3",)


class ObjectStoreError(OSError):
    """The object store refused or failed a request, after the client's own retries."""


def is_remote(path) -> bool:
    """Whether ``path`` (a ``Path``, a ``UPath`` or a string) lives on an object store."""
    if isinstance(path, Path):
        return False
    if isinstance(path, str):
        return path.split("://", 1)[0] in REMOTE_SCHEMES if "://" in path else False
    return getattr(path, "protocol", "") in REMOTE_SCHEMES


def remote_root(url: str):
    """The ``UPath`` of an object-store data directory. Listings are never cached: another process
    (a Dask worker, the code server) may have written since the last one."""
    from upath import UPath  # s3fs and botocore load only when a data directory is remote

    scheme = url.split("://", 1)[0]
    if scheme not in REMOTE_SCHEMES:
        raise ValueError(f"ALPHATWIN_DATA_DIR={url!r}: unsupported scheme {scheme!r}; use a local folder "
                         f"or one of {', '.join(s + '://bucket/prefix' for s in REMOTE_SCHEMES)}")
    if not url.split("://", 1)[1].strip("/"):
        raise ValueError(f"ALPHATWIN_DATA_DIR={url!r} names no bucket: use s3://bucket or s3://bucket/prefix")
    # The endpoint is passed, not only left to botocore to read: it is then part of the key under
    # which fsspec caches the client, so a changed AWS_ENDPOINT_URL never reuses the old one.
    return UPath(url.rstrip("/"), use_listings_cache=False, endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)


def _failed(action: str, path, exc: BaseException) -> ObjectStoreError:
    return ObjectStoreError(
        f"object store: could not {action} {path}: {type(exc).__name__}: {exc}. Nothing was half-written: "
        f"the previous object, if any, is unchanged. Check AWS_ENDPOINT_URL "
        f"({os.environ.get('AWS_ENDPOINT_URL', 'unset: AWS')}), the credentials and that the bucket exists, "
        f"then re-run.")


def put_file(local: str | os.PathLike, path) -> None:
    """Upload ``local`` whole as the object ``path`` (atomic, see the module docstring)."""
    try:
        path.fs.put_file(os.fspath(local), path.path)
    except Exception as exc:  # a missing bucket included (s3fs raises FileNotFoundError)
        raise _failed("write", path, exc) from exc


def read_bytes(path) -> bytes:
    """The object's bytes; ``FileNotFoundError`` when it does not exist."""
    try:
        return path.fs.cat_file(path.path)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise _failed("read", path, exc) from exc


def read_many(paths: list) -> list[bytes]:
    """The objects' bytes in order, fetched concurrently: one GET each (a Parquet dataset over the
    store would send several ranged requests per file, one file after another)."""
    if not paths:
        return []
    keys = [p.path for p in paths]
    try:
        found = paths[0].fs.cat(keys, on_error="raise")
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise _failed("read", paths[0].parent, exc) from exc
    return [found[k] for k in keys]


def listing(folder) -> dict[str, tuple]:
    """Name -> identity ``(etag, size)`` of the objects directly under ``folder`` (none: ``{}``).

    The identity changes whenever an object is replaced, as ``(inode, mtime, size)`` does locally."""
    try:
        entries = folder.fs.ls(folder.path, detail=True)
    except FileNotFoundError:
        return {}
    except Exception as exc:
        raise _failed("list", folder, exc) from exc
    return {e["name"].rsplit("/", 1)[-1]: (e.get("ETag"), e["size"]) for e in entries if e.get("type") == "file"}


def holds(found: tuple | None, payload) -> bool:
    """Whether an object of identity ``found`` already holds exactly ``payload``'s bytes (a single-part
    upload's ETag is the MD5 of its bytes; a multipart ETag never matches, so it is rewritten)."""
    if found is None or found[1] != len(payload):
        return False
    return (found[0] or "").strip('"') == hashlib.md5(memoryview(payload)).hexdigest()


def arrow_filesystem(path):
    """A pyarrow filesystem over ``path``'s store, for Parquet reads (paths then are ``p.path``)."""
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    return PyFileSystem(FSSpecHandler(path.fs))
