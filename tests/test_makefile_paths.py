"""Every file the Makefile runs exists, and `make bench` finds every benchmark."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_script_and_config_the_makefile_names_exists():
    named = set(re.findall(r"\b((?:benchmarks|config|tests|docker)/[\w./-]+\.(?:py|yaml|yml))\b",
                           (ROOT / "Makefile").read_text()))
    assert "benchmarks/run_all.py" in named
    assert [path for path in sorted(named) if not (ROOT / path).exists()] == []


def test_run_all_lists_every_benchmark_script():
    listed = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--list"], check=True,
                            capture_output=True, text=True).stdout.split()
    assert listed == sorted(p.stem.removeprefix("bench_") for p in (ROOT / "benchmarks").glob("bench_*.py"))
    refused = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--only", "no_such"],
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "no benchmark named no_such" in refused.stderr
