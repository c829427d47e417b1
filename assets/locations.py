"""Where an artifact is, as asset metadata: a local file's path, or an object-store file's URL.

A path under an ``s3://`` data directory is not a file on the machine showing the UI, so it goes
into metadata as a URL (``MetadataValue.url``), and a link to it is the ``s3://`` URL itself rather
than ``file://``. Only the string form is used here: nothing of the object store is imported.
"""

from __future__ import annotations

import dagster as dg

from alphatwin_pipelines.objectstore import is_remote


def location(path) -> dg.MetadataValue:
    """``MetadataValue.path`` of a local file or folder, ``MetadataValue.url`` of an object."""
    return dg.MetadataValue.url(str(path)) if is_remote(path) else dg.MetadataValue.path(str(path))


def link(path) -> str:
    """A URL for a Markdown link to ``path``: ``file://`` locally, the object's ``s3://`` URL remotely."""
    return str(path) if is_remote(path) else f"file://{path}"
