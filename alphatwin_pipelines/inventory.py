"""Print what is stored under the data directory: ``python -m alphatwin_pipelines.inventory``.

`make run` ends with this, so a user sees at once what was built and where it lives, and how
many rows the quality rules quarantined or flagged, by rule.
"""

from __future__ import annotations

import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from alphatwin_pipelines.objectstore import arrow_filesystem, is_remote, listing
from alphatwin_pipelines.storage import REJECTED_INPUTS_DIR, TableStore
from alphatwin_pipelines.symbol_index import describe
from alphatwin_pipelines.tables import QUARANTINED, VALIDATED


def _folders(root) -> list:
    if is_remote(root):  # one listing, not a request per entry
        return [root / e["name"].rsplit("/", 1)[-1] for e in root.fs.ls(root.path, detail=True) if e["type"] == "directory"]
    return [p for p in root.iterdir() if p.is_dir()]


def _parquet_files(folder) -> list[tuple]:
    """``(path, size)`` of the Parquet files directly in ``folder``, by name (none: ``[]``)."""
    if is_remote(folder):
        found = listing(folder)
        return [(folder / n, found[n][1]) for n in sorted(found) if n.endswith(".parquet") and not n.startswith(".")]
    if not folder.is_dir():
        return []
    return [(f, f.stat().st_size) for f in sorted(folder.glob("*.parquet")) if not f.name.startswith(".")]


#: Bytes fetched from the end of each object: the footer of any partition of these tables fits.
_TAIL = 1 << 16


def _rows(files: list[tuple]) -> int:
    """Rows in the footers of ``files`` (``(path, size)``). On an object store every file's tail is
    fetched in one concurrent round (a Parquet reader would send requests file after file) and its
    footer parsed from memory; a footer longer than the tail is read whole."""
    if not files or not is_remote(files[0][0]):
        return sum(pq.read_metadata(path).num_rows for path, _ in files)
    fs = files[0][0].fs
    tails = fs.cat_ranges([p.path for p, _ in files], [max(size - _TAIL, 0) for _, size in files],
                          [size for _, size in files], on_error="raise")
    rows = 0
    for (path, _), tail in zip(files, tails):
        footer = int.from_bytes(tail[-8:-4], "little") + 8
        if footer <= len(tail):  # the metadata only: the column chunks it points at are never read
            rows += pq.read_metadata(pa.BufferReader(b"PAR1" + tail[-footer:])).num_rows
        else:
            rows += pq.read_metadata(path.path, filesystem=arrow_filesystem(path)).num_rows
    return rows


def inventory(store: TableStore) -> list[dict]:
    rows = []
    if not store.data_dir.exists():
        return rows
    for folder in sorted(_folders(store.data_dir), key=lambda p: p.name):
        if store.whole_path(folder.name).exists():
            continue  # a whole table's immutable versions (portfolio_allocations/<version>.parquet)
        files = _parquet_files(folder)
        if not files:
            continue
        first, last = files[0][0].stem, files[-1][0].stem
        rows.append(dict(table=folder.name, span=f"{len(files):>4} partition(s)  {first} .. {last}",
                         rows=_rows(files), mib=sum(size for _, size in files) / 2**20,
                         index=describe(folder, [f.stem for f, _ in files])))
    for path, size in _parquet_files(store.data_dir):
        versions = len(_parquet_files(store.table_dir(path.stem)))
        rows.append(dict(table=path.stem, span="whole table" + (f", {versions} immutable version(s)" if versions else ""),
                         rows=_rows([(path, size)]), mib=size / 2**20))
    return rows


def rows_by_rule(store: TableStore, table: str, column: str) -> tuple[int, pd.Series]:
    """Stored rows of ``table`` that name a rule in ``column`` (comma-separated rule ids), and
    how many name each rule (a row broken by two rules counts for both)."""
    if len(store.stored_sessions(table)) == 0:
        return 0, pd.Series(dtype="int64")
    ids = store.read_partitions(table, columns=[column])[column]
    ids = ids[ids.fillna("") != ""]
    counts = ids.str.split(",").explode().value_counts()
    return len(ids), counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")


def _print_by_rule(title: str, rows: int, counts: pd.Series) -> None:
    print(f"\n{title}: {rows:,} row(s)" + (", by rule:" if len(counts) else ""))
    for rule, n in counts.items():
        print(f"  {rule:<28} {n:>10,}")


def main(argv=None) -> int:
    store = TableStore()
    rows = inventory(store)
    print(f"\nTables under {store.data_dir}:")
    if not rows:
        print("  (none yet)")
    for r in rows:
        print(f"  {r['table']:<22} {r['span']:<46} {r['rows']:>10,} rows {r['mib']:8.1f} MiB")
        if r.get("index"):
            i = r["index"]
            print(f"  {'':<22} by-symbol index: {i['years']} year file(s), serving {i['serving']:,} of {i['sessions']:,} "
                  f"sessions (the rest read from their files) {i['bytes'] / 2**20:8.1f} MiB")
    rejected = len(store.read_rejections())
    if rejected:
        log = store.data_dir / REJECTED_INPUTS_DIR if store.remote else store.rejected_log_path
        print(f"  rejected-inputs log: {log} ({rejected:,} records)")
    if len(store.stored_sessions(QUARANTINED)):
        _print_by_rule(f"Quarantined in {QUARANTINED} (ERROR rules)", *rows_by_rule(store, QUARANTINED, "rule_id"))
        _print_by_rule(f"Flagged in {VALIDATED} (WARNING rules, rows kept)", *rows_by_rule(store, VALIDATED, "flags"))
    print("\nIn a notebook:  from alphatwin_pipelines import load; load('raw_ohlcv', symbols=['...'], start='2025-01-02')")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
