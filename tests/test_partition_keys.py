"""One spelling of a session's partition key, and one definition of a lookback window's start."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from alphatwin_pipelines.calendar import all_sessions, lookback_start, sessions_between
from alphatwin_pipelines.partition_keys import key_sessions, session_key, session_keys
from alphatwin_pipelines.storage import TableStore
from assets.partitions import nyse_sessions


def test_a_key_names_its_file_and_a_file_name_is_its_key(tmp_path):
    sessions = sessions_between("2024-12-20", "2025-01-06")
    keys = [session_key(s) for s in sessions]
    assert keys[:3] == ["2024-12-20", "2024-12-23", "2024-12-24"]
    assert keys == nyse_sessions.get_partition_keys_in_range(dg.PartitionKeyRange(keys[0], keys[-1]))
    store = TableStore(tmp_path)
    assert [store.partition_path("raw_ohlcv", k).stem for k in keys] == keys
    back = key_sessions(keys)
    assert back.equals(pd.DatetimeIndex(sessions).astype("datetime64[ns]")) and back.dtype == "datetime64[ns]"
    assert [session_key(s) for s in back] == keys == session_keys(back) == session_keys(sessions)


def test_lookback_start_counts_sessions_back_over_holidays():
    # 2025-01-02 is the first session of 2025; three sessions back skips New Year's Day.
    assert lookback_start("2025-01-02", 3) == pd.Timestamp("2024-12-27")
    assert lookback_start("2025-01-02", 0) == pd.Timestamp("2025-01-02")
    first = all_sessions()[0]
    assert lookback_start(first, 10) == first  # nothing before the calendar's origin
    assert lookback_start(all_sessions()[5], 10) == first  # fewer than asked near the start


def test_lookback_start_over_stored_sessions_skips_missing_ones():
    stored = pd.DatetimeIndex(["2024-01-02", "2024-01-03", "2024-01-08", "2024-01-09", "2024-01-10"])
    assert lookback_start("2024-01-09", 2, stored) == pd.Timestamp("2024-01-03")
    assert lookback_start("2024-01-02", 5, stored) == pd.Timestamp("2024-01-02")
