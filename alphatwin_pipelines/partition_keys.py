"""A session's partition key: the one spelling shared by Dagster partitions and stored file names.

``<table>/<key>.parquet`` on disk and the Dagster partition key of the same session are the
same string, so a key from the UI names its file and a file name is a key.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

#: The strftime format of a partition key (``nyse_sessions`` is built with it).
KEY_FORMAT = "%Y-%m-%d"


def session_key(session) -> str:
    """The partition key of ``session`` (a Timestamp, date or key string)."""
    return pd.Timestamp(session).strftime(KEY_FORMAT)


def session_keys(sessions: pd.DatetimeIndex) -> list[str]:
    """``session_key`` of every session, vectorised (a whole history's keys without a Python call each)."""
    return list(np.datetime_as_string(pd.DatetimeIndex(sessions).to_numpy(dtype="datetime64[D]")))


def key_sessions(keys: Iterable[str]) -> pd.DatetimeIndex:
    """The sessions of partition keys, in their order, as a datetime64[ns] index."""
    return pd.DatetimeIndex(pd.to_datetime(list(keys), format=KEY_FORMAT)).astype("datetime64[ns]")
