"""Print what is stored under the data directory: ``python -m alphatwin_pipelines.inventory``.

`make run` ends with this, so a user sees at once what was built and where it lives, and how
many rows the quality rules quarantined or flagged, by rule.
"""

from __future__ import annotations

import sys

import pandas as pd
import pyarrow.parquet as pq

from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.symbol_index import describe
from alphatwin_pipelines.tables import QUARANTINED, VALIDATED


def inventory(store: TableStore) -> list[dict]:
    rows = []
    if not store.data_dir.exists():
        return rows
    for folder in sorted(p for p in store.data_dir.iterdir() if p.is_dir()):
        if store.whole_path(folder.name).exists():
            continue  # a whole table's immutable versions (portfolio_allocations/<version>.parquet)
        files = sorted(f for f in folder.glob("*.parquet") if not f.name.startswith("."))
        if not files:
            continue
        n_rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        size = sum(f.stat().st_size for f in files)
        rows.append(dict(table=folder.name, span=f"{len(files):>4} partition(s)  {files[0].stem} .. {files[-1].stem}",
                         rows=n_rows, mib=size / 2**20, index=describe(folder, [f.stem for f in files])))
    for path in sorted(store.data_dir.glob("*.parquet")):
        versions = len(list(store.table_dir(path.stem).glob("*.parquet"))) if store.table_dir(path.stem).is_dir() else 0
        rows.append(dict(table=path.stem, span="whole table" + (f", {versions} immutable version(s)" if versions else ""),
                         rows=pq.ParquetFile(path).metadata.num_rows, mib=path.stat().st_size / 2**20))
    return rows


def rows_by_rule(store: TableStore, table: str, column: str) -> tuple[int, pd.Series]:
    """Stored rows of ``table`` that name a rule in ``column`` (comma-separated rule ids), and
    how many name each rule (a row broken by two rules counts for both)."""
    folder = store.table_dir(table)
    files = sorted(f for f in folder.glob("*.parquet") if not f.name.startswith(".")) if folder.is_dir() else []
    if not files:
        return 0, pd.Series(dtype="int64")
    ids = pd.concat([pq.read_table(f, columns=[column]).to_pandas()[column] for f in files], ignore_index=True)
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
    log = store.rejected_log_path
    if log.exists():
        print(f"  rejected-inputs log: {log} ({sum(1 for _ in open(log)):,} records)")
    if store.table_dir(QUARANTINED).is_dir():
        _print_by_rule(f"Quarantined in {QUARANTINED} (ERROR rules)", *rows_by_rule(store, QUARANTINED, "rule_id"))
        _print_by_rule(f"Flagged in {VALIDATED} (WARNING rules, rows kept)", *rows_by_rule(store, VALIDATED, "flags"))
    print("\nIn a notebook:  from alphatwin_pipelines import load; load('raw_ohlcv', symbols=['...'], start='2025-01-02')")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
