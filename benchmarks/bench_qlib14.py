"""Peer benchmark: Qlib's 14-feature data-server task on the real S&P 500 panel.

Reads ../shared/data/sp500_daily_1999_2021.parquet cold (the read is inside the timing),
computes the 14 features with the vectorised engine (``alphatwin_pipelines.features.qlib14``)
and then with the per-symbol pandas rolling reference in the same process, checks that they
agree, and prints wall times, rows, peak RSS and the speed ratios. Figures only, no asserts.

    .venv/bin/python benchmarks/bench_qlib14.py

Prices are the raw (unadjusted) columns: the work is identical on adjusted ones.

The Qlib figures are quoted from Qlib's README ("Performance of Qlib Data Server"): the same
14-feature task on 800 stocks, 2007-2020, on Qlib's hardware, not measured here. 7.4 s is
their "+E +D" column (expression *and* dataset caches warm, i.e. mostly reading cached
results); their expression engine computing from scratch ("-E -D") took 147.0 s on 1 CPU.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "sp500_daily_1999_2021.parquet"
COLUMNS = ["symbol", "date", "open", "high", "low", "close", "volume"]
QLIB_README_SECONDS = {
    "Qlib +E +D (caches warm), 1 CPU, README": 7.4,
    "Qlib -E -D (expression engine from scratch), 1 CPU, README": 147.0,
}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _cpu() -> float:
    """User + system CPU seconds of this process (all threads): unlike wall time, not inflated
    by other processes competing for the cores."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    if not DATA.exists():
        print(f"data not found: {DATA}")
        return 0
    import numpy as np
    import pyarrow.parquet as pq

    from alphatwin_pipelines.features.qlib14 import QLIB14, qlib14, qlib14_pandas

    rss_start = _peak_rss_mb()
    c0, t0 = _cpu(), time.perf_counter()
    frame = pq.read_table(DATA, columns=COLUMNS, read_dictionary=["symbol"]).to_pandas()
    c_read, t_read = _cpu() - c0, time.perf_counter() - t0
    fast = qlib14(frame)
    c_fast_total, t_fast_total = _cpu() - c0, time.perf_counter() - t0
    rss_fast = _peak_rss_mb()

    c1, t1 = _cpu(), time.perf_counter()
    again = qlib14(frame)
    c_fast_warm, t_fast_warm = _cpu() - c1, time.perf_counter() - t1
    del again

    c2, t2 = _cpu(), time.perf_counter()
    ref = qlib14_pandas(frame)
    c_pandas, t_pandas = _cpu() - c2, time.perf_counter() - t2

    same_keys = bool((fast["symbol"].astype(str).to_numpy() == ref["symbol"].astype(str).to_numpy()).all())
    print("Qlib 14-feature task on", DATA.name)
    print(f"rows {len(frame):,}  symbols {frame['symbol'].nunique()}  features {len(QLIB14)}")
    print(f"{'':35s}{'wall':>8s}   {'CPU':>7s}")
    print(f"read (Parquet -> pandas, cold)     {t_read:8.3f} s {c_read:7.3f} s")
    print(f"vectorised compute                 {t_fast_total - t_read:8.3f} s {c_fast_total - c_read:7.3f} s"
          f"   (again, warm: {t_fast_warm:.3f} s wall, {c_fast_warm:.3f} s CPU)")
    print(f"vectorised total (read + compute)  {t_fast_total:8.3f} s {c_fast_total:7.3f} s")
    print(f"pandas per-symbol rolling compute  {t_pandas:8.3f} s {c_pandas:7.3f} s"
          f"   (total with the same read {t_read + t_pandas:.3f} s wall)")
    print(f"peak RSS after vectorised run      {rss_fast:8.0f} MB   (at start {rss_start:.0f} MB)")
    print(f"speed-up vs pandas: compute {t_pandas / max(t_fast_total - t_read, 1e-9):6.1f}x   "
          f"read+compute {(t_read + t_pandas) / t_fast_total:6.1f}x")
    for label, seconds in QLIB_README_SECONDS.items():
        print(f"vs {label} {seconds:6.1f} s: {seconds / t_fast_total:6.1f}x")
    print(f"peak RSS at end                    {_peak_rss_mb():8.0f} MB")
    print(f"keys identical: {same_keys}")
    print("max |vectorised - pandas| per feature (NaN masks equal?):")
    for name, expr in QLIB14:
        a, b = fast[name].to_numpy(), ref[name].to_numpy()
        both = np.isfinite(a) & np.isfinite(b)
        diff = float(np.max(np.abs(a[both] - b[both]))) if both.any() else 0.0
        print(f"  {name:7s} {expr:58s} {diff:9.2e}  {bool((np.isnan(a) == np.isnan(b)).all())}")
    print("(differences above ~1e-12 come from pandas' online rolling variance, not the vectorised path:")
    print(" see tests/test_features.py::test_qlib14_second_moments_are_exact)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
