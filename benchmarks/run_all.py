"""Run every benchmark in this folder, one process each, and print a summary (what `make bench` runs).

    .venv/bin/python benchmarks/run_all.py [--only NAME ...] [--skip NAME ...] [--list]

NAME is a script's name without ``bench_`` and ``.py`` (``optimisation``, ``history``, ...). Each
script runs with its default arguments, so the figures are the ones ``README.md`` in this folder
reports; some take tens of minutes (``history``, ``alpha``), and some need extras that a script
names when they are missing (``backtests``: the ``bench`` extra; ``alpha``: Qlib's own venv).
A failing benchmark does not stop the others; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts() -> dict[str, Path]:
    return {p.stem.removeprefix("bench_"): p for p in sorted(HERE.glob("bench_*.py"))}


def main(argv=None) -> int:
    available = scripts()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME")
    parser.add_argument("--skip", nargs="+", default=[], metavar="NAME")
    parser.add_argument("--list", action="store_true", help="print the benchmark names and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(available))
        return 0
    unknown = sorted((set(args.only or []) | set(args.skip)) - set(available))
    if unknown:
        parser.error(f"no benchmark named {', '.join(unknown)}; choose from {', '.join(available)}")
    chosen = [name for name in (args.only or available) if name not in args.skip]

    results = []
    for name in chosen:
        print(f"\n=== {name}: {available[name].relative_to(HERE.parent)}", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, str(available[name])], cwd=HERE.parent)
        results.append((name, code, time.perf_counter() - started))

    print("\n=== summary")
    for name, code, seconds in results:
        print(f"{name:<20} {'ok' if code == 0 else f'FAILED (exit {code})':<16} {seconds:8.1f} s")
    return int(any(code for _, code, _ in results))


if __name__ == "__main__":
    sys.exit(main())
