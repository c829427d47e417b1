"""Storage: atomic replacement under SIGKILL, byte-identical rewrites, and `load`."""

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from alphatwin_pipelines import load
from alphatwin_pipelines.schema import bars_to_arrow, to_canonical
from alphatwin_pipelines.storage import TableStore


def _bars(n_symbols=3, dates=("2024-01-02", "2024-01-03"), seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_symbols):
        for d in dates:
            close = 100 + rng.normal()
            rows.append(dict(symbol=f"S{i}", date=d, open=close, high=close + 1, low=close - 1, close=close,
                             volume=int(rng.integers(1, 10_000)), dividend=0.0, split_ratio=1.0, source="test"))
    return to_canonical(pd.DataFrame(rows))


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_rewriting_a_partition_gives_identical_bytes(tmp_path):
    store = TableStore(tmp_path)
    bars = _bars()
    first = store.write_partition("raw_ohlcv", "2024-01-02", bars_to_arrow(bars))
    digest = _sha(first)
    shuffled = bars.sample(frac=1.0, random_state=3)  # row order must not matter
    store.write_partition("raw_ohlcv", "2024-01-02", bars_to_arrow(shuffled))
    assert _sha(first) == digest
    assert not list(first.parent.glob(".*.tmp")), "no temporary files are left behind"


def test_load_filters_dates_and_symbols(tmp_path):
    store = TableStore(tmp_path)
    bars = _bars(dates=("2024-01-02", "2024-01-03", "2024-01-04"))
    for date, frame in bars.groupby("date"):
        store.write_partition("raw_ohlcv", date, bars_to_arrow(frame))
    out = load("raw_ohlcv", symbols=["s1"], start="2024-01-03", end="2024-01-04", data_dir=tmp_path)
    assert sorted(out["symbol"].unique()) == ["S1"]
    assert list(out["date"].dt.strftime("%Y-%m-%d")) == ["2024-01-03", "2024-01-04"]
    assert out["date"].dtype == "datetime64[ns]"
    expected = bars[(bars.symbol == "S1") & (bars.date >= "2024-01-03")].reset_index(drop=True)
    pd.testing.assert_frame_equal(out.sort_values(["symbol", "date"]).reset_index(drop=True), expected,
                                  check_dtype=False)


def test_load_unknown_table_names_what_exists(tmp_path):
    TableStore(tmp_path).write_partition("raw_ohlcv", "2024-01-02", bars_to_arrow(_bars()))
    with pytest.raises(KeyError, match="raw_ohlcv"):
        load("no_such_table", data_dir=tmp_path)


WRITER = textwrap.dedent(
    """
    import sys, numpy as np, pandas as pd
    from alphatwin_pipelines.schema import bars_to_arrow, to_canonical
    from alphatwin_pipelines.parquet_files import write_parquet
    n = 400_000
    rng = np.random.default_rng(1)
    frame = to_canonical(pd.DataFrame(dict(
        symbol=np.char.add("S", (np.arange(n) % 5000).astype(str)),
        date=pd.Timestamp("2024-01-02") + pd.to_timedelta(np.arange(n) // 5000, "D"),
        open=rng.random(n), high=rng.random(n), low=rng.random(n), close=rng.random(n),
        volume=np.arange(n), dividend=0.0, split_ratio=1.0, source="new-version")))
    table = bars_to_arrow(frame)
    print("ready", flush=True)
    while True:
        write_parquet(sys.argv[1], table)
    """
)


@pytest.mark.slow
def test_sigkill_mid_write_leaves_old_or_new_file_never_a_torn_one(tmp_path):
    target = tmp_path / "raw_ohlcv" / "2024-01-02.parquet"
    store = TableStore(tmp_path)
    store.write_partition("raw_ohlcv", "2024-01-02", bars_to_arrow(_bars()))
    previous = _sha(target)
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    outcomes = set()
    rng = np.random.default_rng(7)
    for attempt in range(6):
        proc = subprocess.Popen([sys.executable, str(script), str(target)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.05, 0.6)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if list(target.parent.glob(".*.tmp")):
            outcomes.add("killed mid-write")
        table = pq.read_table(target)  # must always be a complete, readable Parquet file
        sources = set(table.column("source").to_pylist())
        if _sha(target) == previous:
            outcomes.add("previous")
        else:
            assert sources == {"new-version"} and table.num_rows == 400_000
            outcomes.add("new")
        assert not [p for p in target.parent.glob("*.parquet") if p != target]
    # The next ordinary write clears any temporary file a killed writer left behind.
    store.write_partition("raw_ohlcv", "2024-01-02", bars_to_arrow(_bars()))
    assert not list(target.parent.glob(".*.tmp"))
    # The writer spends nearly all its time inside a write, so kills land mid-write.
    assert "killed mid-write" in outcomes, outcomes


def test_sigkill_before_first_write_leaves_nothing(tmp_path):
    target = tmp_path / "fresh" / "2024-01-02.parquet"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.Popen([sys.executable, str(script), str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if target.exists():  # the first write may have completed; then it is whole
        assert pq.read_table(target).num_rows == 400_000
    assert not [p for p in target.parent.glob("*.parquet") if p != target]


def test_rejections_log_is_append_only_jsonl(tmp_path):
    store = TableStore(tmp_path)
    store.append_rejections([{"symbol": "AAA", "rule": "no_data", "reason": "x"}])
    store.append_rejections([{"symbol": "BBB", "rule": "empty_file", "reason": "y"}])
    log = load("rejected_inputs", data_dir=tmp_path)
    assert list(log["symbol"]) == ["AAA", "BBB"]
    assert list(log["rule"]) == ["no_data", "empty_file"]


def test_a_batch_that_raises_replaces_nothing(tmp_path):
    store = TableStore(tmp_path)
    old = _bars(seed=1)
    for day in ("2024-01-02", "2024-01-03"):
        store.write_partition("raw_ohlcv", day, bars_to_arrow(old[old.date == day]))
    before = {p.name: _sha(p) for p in (tmp_path / "raw_ohlcv").glob("*.parquet")}
    new = _bars(seed=2)
    with pytest.raises(RuntimeError, match="boom"):
        with store.batch():
            store.write_sessions("raw_ohlcv", new, pd.DatetimeIndex(["2024-01-02", "2024-01-03"]), to_arrow=bars_to_arrow)
            raise RuntimeError("boom")
    assert {p.name: _sha(p) for p in (tmp_path / "raw_ohlcv").glob("*.parquet")} == before
    assert not list((tmp_path / "raw_ohlcv").glob(".*.tmp"))
    store.write_sessions("raw_ohlcv", new, pd.DatetimeIndex(["2024-01-02", "2024-01-03"]), to_arrow=bars_to_arrow)
    out = load("raw_ohlcv", data_dir=tmp_path)
    pd.testing.assert_frame_equal(out.sort_values(["symbol", "date"]).reset_index(drop=True), new, check_dtype=False)


def test_a_batch_writes_the_same_bytes_as_single_writes_and_clears_stale_temporaries(tmp_path):
    days = [f"2024-01-{d:02d}" for d in range(2, 12)]
    bars = _bars(n_symbols=50, dates=days, seed=4)
    single, batched = TableStore(tmp_path / "single"), TableStore(tmp_path / "batched")
    for day in days:
        single.write_partition("raw_ohlcv", day, bars_to_arrow(bars[bars.date == day]))
    folder = batched.table_dir("raw_ohlcv")
    folder.mkdir(parents=True)
    stale = [folder / ".2024-01-05.parquet.abc123.tmp", folder / ".2024-01-09.parquet.x_9.tmp"]
    unrelated = folder / ".notes.txt"
    for path in (*stale, unrelated):
        path.write_bytes(b"left by a killed writer")
    batched.write_sessions("raw_ohlcv", bars, pd.DatetimeIndex(days), to_arrow=bars_to_arrow)
    assert {p.name: _sha(p) for p in folder.glob("*.parquet")} == {
        p.name: _sha(p) for p in single.table_dir("raw_ohlcv").glob("*.parquet")}
    assert not list(folder.glob(".*.tmp")) and unrelated.exists()


def test_a_failing_write_inside_a_batch_replaces_nothing(tmp_path):
    store = TableStore(tmp_path)
    good = bars_to_arrow(_bars())
    store.write_partition("raw_ohlcv", "2024-01-02", good)
    before = _sha(store.partition_path("raw_ohlcv", "2024-01-02"))
    with pytest.raises(Exception):
        with store.batch():
            store.write_partition("raw_ohlcv", "2024-01-02", good.slice(0, 2))
            store.write_partition("raw_ohlcv", "2024-01-03", "not a table")  # fails after the first write began
    assert _sha(store.partition_path("raw_ohlcv", "2024-01-02")) == before
    assert not store.partition_path("raw_ohlcv", "2024-01-03").exists()
    assert not list(store.table_dir("raw_ohlcv").glob(".*.tmp"))


def test_a_batch_leaves_files_that_already_hold_the_new_bytes_untouched(tmp_path):
    days = [f"2024-01-{d:02d}" for d in range(2, 6)]
    bars = _bars(n_symbols=20, dates=days, seed=8)
    store = TableStore(tmp_path)
    store.write_sessions("raw_ohlcv", bars, pd.DatetimeIndex(days), to_arrow=bars_to_arrow)
    paths = {day: store.partition_path("raw_ohlcv", day) for day in days}
    inodes = {day: p.stat().st_ino for day, p in paths.items()}
    stale = paths[days[0]].parent / f".{paths[days[0]].name}.killed.tmp"
    stale.write_bytes(b"left by a killed writer")
    changed = bars.copy()
    changed.loc[changed["date"] == days[2], "close"] += 1.0
    store.write_sessions("raw_ohlcv", changed, pd.DatetimeIndex(days), to_arrow=bars_to_arrow)
    assert {d: paths[d].stat().st_ino == inodes[d] for d in days} == {d: d != days[2] for d in days}
    reread = TableStore(tmp_path / "fresh")
    reread.write_sessions("raw_ohlcv", changed, pd.DatetimeIndex(days), to_arrow=bars_to_arrow)
    assert {d: _sha(paths[d]) for d in days} == {d: _sha(reread.partition_path("raw_ohlcv", d)) for d in days}
    assert not stale.exists() and not list(paths[days[0]].parent.glob(".*.tmp"))


def test_a_write_failing_after_its_temporary_exists_leaves_no_temporary(tmp_path, monkeypatch):
    from alphatwin_pipelines import parquet_files

    store = TableStore(tmp_path)
    good = bars_to_arrow(_bars())
    store.write_partition("raw_ohlcv", "2024-01-02", good)
    before = _sha(store.partition_path("raw_ohlcv", "2024-01-02"))

    def disk_full(payload):
        raise OSError("disk full")

    monkeypatch.setattr(parquet_files, "memoryview", disk_full, raising=False)  # the temporary is open by then
    with pytest.raises(OSError, match="disk full"):
        store.write_sessions("raw_ohlcv", _bars(seed=5), pd.DatetimeIndex(["2024-01-02", "2024-01-03"]),
                             to_arrow=bars_to_arrow)
    assert _sha(store.partition_path("raw_ohlcv", "2024-01-02")) == before
    assert not store.partition_path("raw_ohlcv", "2024-01-03").exists()
    assert not list(store.table_dir("raw_ohlcv").glob(".*.tmp"))
