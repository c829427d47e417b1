"""The data directory on a real S3-compatible server (moto's server on 127.0.0.1): the table store,
the per-symbol index, the rejected-inputs log and ``load`` behave as on a local folder; a writer
killed mid-batch leaves every object old or new and whole; a store that refuses requests gives a
clear error and changes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines import load
from alphatwin_pipelines.objectstore import ObjectStoreError, is_remote, listing
from alphatwin_pipelines.schema import to_canonical
from alphatwin_pipelines.storage import TableStore, resolve_data_dir
from tests.s3_support import RefusingProxy, s3_data_dir, s3_server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow
SESSIONS = pd.bdate_range("2024-01-02", periods=12)


def _bars(seed: int = 0, sessions=SESSIONS, n_symbols: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for day in sessions:
        for i in range(n_symbols):
            close = 100 + rng.normal()
            rows.append(dict(symbol=f"S{i}", date=day, open=close, high=close + 1, low=close - 1, close=close,
                             volume=int(rng.integers(1, 10_000)), dividend=0.0, split_ratio=1.0, source="test"))
    return to_canonical(pd.DataFrame(rows))


def _modified(store: TableStore, table: str) -> dict:
    folder = store.table_dir(table)
    return {e["name"].rsplit("/", 1)[-1]: e["LastModified"] for e in folder.fs.ls(folder.path, detail=True) if e["type"] == "file"}


def test_the_data_dir_url_resolves_to_the_object_store(s3_data_dir):
    root = resolve_data_dir()
    assert is_remote(root) and str(root) == s3_data_dir
    assert TableStore().remote
    with pytest.raises(ValueError, match="no bucket"):
        resolve_data_dir("s3://")


def test_partitions_round_trip_and_a_rewrite_of_the_same_rows_uploads_nothing(s3_data_dir):
    store, bars = TableStore(s3_data_dir), _bars()
    counts = store.write_sessions("raw_ohlcv", bars, SESSIONS)
    assert set(counts.values()) == {6}
    assert list(store.stored_sessions("raw_ohlcv")) == list(SESSIONS)
    back = store.read_partitions("raw_ohlcv")
    pd.testing.assert_frame_equal(back.sort_values(["date", "symbol"]).reset_index(drop=True),
                                  bars.sort_values(["date", "symbol"]).reset_index(drop=True), check_like=True)
    assert set(store.read_partitions("raw_ohlcv", symbols=["s2"])["symbol"]) == {"S2"}
    before = _modified(store, "raw_ohlcv")
    time.sleep(1.1)  # LastModified has one-second resolution
    store.write_sessions("raw_ohlcv", bars.copy(), SESSIONS)
    assert _modified(store, "raw_ohlcv") == before, "unchanged bytes must not be uploaded again"
    changed = bars.copy()
    changed.loc[changed["date"] == SESSIONS[3], "close"] += 1.0
    store.write_sessions("raw_ohlcv", changed, SESSIONS)
    after = _modified(store, "raw_ohlcv")
    assert [name for name in after if after[name] != before[name]] == [f"{SESSIONS[3]:%Y-%m-%d}.parquet"]


def test_every_read_gives_what_the_same_tables_in_a_local_folder_give(s3_data_dir, tmp_path):
    remote, local, bars = TableStore(s3_data_dir), TableStore(tmp_path / "data"), _bars(7)
    for store in (remote, local):
        store.write_sessions("features", bars, SESSIONS)
    for kwargs in ({}, dict(symbols=["S3", "S0"]), dict(columns=["symbol", "date", "close"]),
                   dict(start=SESSIONS[2], end=SESSIONS[2]), dict(start=SESSIONS[4], symbols=["S5"], columns=["close"])):
        pd.testing.assert_frame_equal(remote.read_partitions("features", **kwargs),
                                      local.read_partitions("features", **kwargs))


def test_the_per_symbol_index_serves_reads_and_is_never_stale(s3_data_dir):
    sessions = pd.bdate_range("2023-12-22", periods=12)  # two years: two index files read side by side
    store, bars = TableStore(s3_data_dir), _bars(1, sessions)
    store.write_sessions("features", bars, sessions)
    report = store.compact_by_symbol("features")
    assert report.sessions == len(sessions) and report.built == [2023, 2024]
    wanted = ["S1", "S4"]
    per_session = store._read_files([store.partition_path("features", s) for s in sessions], wanted, None)
    pd.testing.assert_frame_equal(store.read_partitions("features", symbols=wanted), per_session)
    rewritten = bars[bars["date"] == sessions[8]].assign(close=1.0)
    store.write_sessions("features", rewritten, sessions[8:9])
    fresh = store.read_partitions("features", symbols=wanted)
    assert (fresh.loc[fresh["date"] == sessions[8], "close"] == 1.0).all()
    assert len(fresh) == len(per_session)
    assert store.compact_by_symbol("features").built == [2024]
    assert store.compact_by_symbol("features").current == [2023, 2024]


def test_whole_tables_rejections_and_load(s3_data_dir):
    from alphatwin_pipelines.schema import bars_to_arrow

    store = TableStore(s3_data_dir)
    store.write_table("universe", bars_to_arrow(_bars(2, SESSIONS[:1])))
    store.append_rejections([{"file": "a.csv", "reason": "bad header"}])
    store.append_rejections([{"file": "b.csv", "reason": "empty"}, {"file": "c.csv", "reason": "empty"}])
    assert list(load("rejected_inputs")["file"]) == ["a.csv", "b.csv", "c.csv"]
    assert len(load("universe")) == 6
    store.write_sessions("raw_ohlcv", _bars(3), SESSIONS)
    assert set(load("raw_ohlcv", symbols="S0", start=SESSIONS[2], end=SESSIONS[4])["date"]) == set(SESSIONS[2:5])
    with pytest.raises(FileNotFoundError, match="not been materialised"):
        store.read_table("portfolio_allocations")


_WRITER = textwrap.dedent("""
    import sys, numpy as np, pandas as pd
    from alphatwin_pipelines.storage import TableStore
    from alphatwin_pipelines.schema import to_canonical
    sessions = pd.bdate_range("2024-01-02", periods=40)
    rng = np.random.default_rng(int(sys.argv[2]))
    n = 4000
    frame = to_canonical(pd.DataFrame(dict(
        symbol=np.tile([f"S{i:04d}" for i in range(n)], len(sessions)), date=np.repeat(sessions, n),
        open=rng.random(n * len(sessions)) + 10, high=11.0, low=9.0, close=10.0, volume=1,
        dividend=0.0, split_ratio=1.0, source=sys.argv[2])))
    print("start", flush=True)
    TableStore(sys.argv[1]).write_sessions("raw_ohlcv", frame, sessions)
    print("done", flush=True)
""")


def _run_writer(tmp_path, url: str, seed: int, kill_after: float | None):
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    proc = subprocess.Popen([sys.executable, str(script), url, str(seed)], stdout=subprocess.PIPE, text=True,
                            env=os.environ.copy())
    assert proc.stdout.readline().strip() == "start"
    if kill_after is None:
        assert proc.wait(120) == 0
        return
    time.sleep(kill_after)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_a_writer_killed_mid_batch_leaves_each_partition_old_or_new_and_whole(s3_data_dir, tmp_path):
    store = TableStore(s3_data_dir)
    _run_writer(tmp_path, s3_data_dir, 1, None)
    old = store.read_partitions("raw_ohlcv")
    assert set(old["source"]) == {"1"} and len(old) == 40 * 4000
    for delay in (0.3, 1.0, 2.0):
        _run_writer(tmp_path, s3_data_dir, 2, delay)
        sessions = store.stored_sessions("raw_ohlcv")
        assert len(sessions) == 40
        for session in sessions:
            part = store.read_partitions("raw_ohlcv", start=session, end=session)
            assert len(part) == 4000 and part["source"].nunique() == 1, f"{session:%Y-%m-%d} is torn"
    _run_writer(tmp_path, s3_data_dir, 2, None)
    assert set(store.read_partitions("raw_ohlcv")["source"]) == {"2"}


@pytest.mark.parametrize("writes_only", [False, True], ids=["refuses-everything", "refuses-uploads"])
def test_a_store_that_refuses_requests_gives_a_clear_error_and_changes_nothing(s3_data_dir, s3_server, monkeypatch,
                                                                              writes_only):
    proxy = RefusingProxy(int(s3_server.endpoint.rsplit(":", 1)[1]))
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
        store = TableStore(s3_data_dir)
        first = _bars(4)
        store.write_sessions("raw_ohlcv", first, SESSIONS)
        before = listing(store.table_dir("raw_ohlcv"))
        proxy.refuse(writes_only=writes_only)
        with pytest.raises(ObjectStoreError) as failure:
            store.write_sessions("raw_ohlcv", _bars(5), SESSIONS)
        message = str(failure.value)
        assert f"{s3_data_dir}/raw_ohlcv" in message and "AWS_ENDPOINT_URL" in message and "re-run" in message
        assert ("could not write" if writes_only else "could not list") in message
        proxy.refuse(False)
        assert listing(store.table_dir("raw_ohlcv")) == before, "a refused batch must not change any object"
        pd.testing.assert_frame_equal(store.read_partitions("raw_ohlcv").reset_index(drop=True),
                                      first.sort_values(["date", "symbol"]).reset_index(drop=True), check_like=True)
        store.write_sessions("raw_ohlcv", _bars(5), SESSIONS)  # once the store answers, a re-run succeeds
        assert listing(store.table_dir("raw_ohlcv")) != before
    finally:
        proxy.close()


def test_local_state_moves_to_the_state_dir_when_the_data_is_remote(s3_data_dir, tmp_path, monkeypatch):
    from alphatwin_pipelines.alpha.registry import default_tracking_uri
    from alphatwin_pipelines.data_dir import STATE_DIR_ENV, state_dir
    from alphatwin_pipelines.execution import default_ledger_url
    from alphatwin_pipelines.optimise.study import default_storage_url
    from assets.resources import DropFolderResource, StorageResource

    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "state"))
    assert state_dir() == tmp_path / "state" and (tmp_path / "state").is_dir()
    assert default_storage_url(None) == f"sqlite:///{tmp_path / 'state' / 'optuna.db'}"
    assert default_tracking_uri(None) == f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}"
    assert default_ledger_url(None) == f"sqlite:///{tmp_path / 'state' / 'paper_ledger.db'}"
    assert DropFolderResource().folder(StorageResource()) == tmp_path / "state" / "drop"
    monkeypatch.delenv(STATE_DIR_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert state_dir() == tmp_path / "home" / ".cache" / "alphatwin" / "s3" / s3_data_dir.removeprefix("s3://")
