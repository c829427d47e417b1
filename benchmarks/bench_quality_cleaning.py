"""Quality + cleaning: validate, corporate-action events and cleaning over a 5-year backfill and
one new session, through the engine and through the real `dagster asset materialize` CLI, plus
the engine over the full real S&P 500 set. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/bench_quality_cleaning.py [--symbols 1000 --start 2020-01-02
        --end 2024-12-31 --new 2025-01-02 --skip-cli --skip-real --skip-checks]

(a) 1000 synthetic symbols x 5 years: raw written by the engine (``ingest``), then
    ``validate_sessions`` + ``build_events`` + ``clean_sessions`` over the whole range in one
    call each, and the same four assets as one single-run backfill through the CLI (a temp
    DAGSTER_HOME with the repo's dagster.yaml, ALPHATWIN_DATA_DIR at the temp store).
(b) the next session (2025-01-02) alone, through the engine and through the CLI.
(c) the real set in ../shared/data (504 symbols x 21 years) written as raw partitions, then
    validate + events + clean over every session (engine only); skipped if the file is absent.

Engine peak RSS is this process's (sampled every 10 ms by ``profiling.measure``); a CLI run's
is the dagster process's own ``ru_maxrss``, read by a tiny wrapper whose only child it is.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402

from alphatwin_pipelines.calendar import sessions_between  # noqa: E402
from alphatwin_pipelines.ingest import ingest  # noqa: E402
from alphatwin_pipelines.profiling import Measurement, measure  # noqa: E402
from alphatwin_pipelines.schema import bars_to_arrow  # noqa: E402
from alphatwin_pipelines.sources.synthetic import SyntheticSource  # noqa: E402
from alphatwin_pipelines.stages.cleaning import build_events, clean_sessions  # noqa: E402
from alphatwin_pipelines.stages.quality import validate_sessions  # noqa: E402
from alphatwin_pipelines.storage import TableStore  # noqa: E402
from alphatwin_pipelines.tables import CLEANED, FACTORS, QUARANTINED, RAW, VALIDATED  # noqa: E402

DAGSTER = str(Path(sys.executable).parent / "dagster")
SP500 = REPO.parent / "shared" / "data" / "sp500_daily_1999_2021.parquet"
ASSETS = "validated_ohlcv,quarantined_ohlcv,adjustment_factors,cleaned_ohlcv"
OUTPUTS = (VALIDATED, QUARANTINED, FACTORS, CLEANED)
TARGET_BACKFILL_S = 30.0
TARGET_SESSION_S = 3.0
# Runs the CLI as its only child, so RUSAGE_CHILDREN is that one process's peak.
WRAPPER = (
    "import resource, subprocess, sys\n"
    "with open(sys.argv[1], 'ab') as log:\n"
    "    code = subprocess.run(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(code)\n"
)


def mib(kib: float) -> float:
    return kib / 1024


def engine(store: TableStore, sessions: pd.DatetimeIndex) -> tuple[dict[str, Measurement], dict]:
    """validate + events + clean over ``sessions`` (one call each), with their figures."""
    phases: dict[str, Measurement] = {}
    with measure() as phases["validate"]:
        quality = validate_sessions(store, sessions)
    with measure() as phases["events"]:
        events = build_events(store, sessions)
    with measure() as phases["clean"]:
        cleaned = clean_sessions(store, sessions)
    counts = {
        "rows_in": sum(s.rows_in for s in quality.sessions),
        "validated": sum(s.validated for s in quality.sessions),
        "quarantined": sum(s.quarantined for s in quality.sessions),
        "flagged": sum(s.flagged for s in quality.sessions),
        "events": sum(len(d.events) for d in events.per_session),
        "cleaned": sum(cleaned.rows.values()),
        "filled": sum(cleaned.filled.values()),
        "fired": quality.summary[quality.summary["violations"] > 0].sort_values("violations", ascending=False),
        "report": quality,
    }
    return phases, counts


def check_costs(report, docs_dir: Path) -> None:
    """What the validation step does on top of ``validate_sessions``: the evidence for its five
    checks (not part of the engine figure; printed to explain the CLI's validation step)."""
    from alphatwin_pipelines.stages.quality import residual_errors, schema_failures, session_gaps

    costs: dict[str, Measurement] = {}
    with measure() as costs["pandera_schema"]:
        schema_failures(report.validated)
    with measure() as costs["no_error_rule_rows_remain"]:
        residual_errors(report.validated, report.recheck_context)
    with measure() as costs["no_missing_sessions"]:
        session_gaps(report.validated, report.history)
    if "great_expectations" not in sys.modules:  # paid once per process, i.e. by every CLI run
        with measure() as costs["import great_expectations"]:
            import great_expectations  # noqa: F401
    with measure() as costs["great_expectations_suite"]:
        from alphatwin_pipelines.quality.gx_report import run_gx_suite

        run_gx_suite(report.validated, docs_dir)
    print("  check evidence     " + ", ".join(f"{k} {m.duration_s:.2f} s" for k, m in costs.items())
          + f"; peak RSS {max(m.peak_rss_mb for m in costs.values()):.0f} MiB")


def total(phases: dict[str, Measurement]) -> Measurement:
    return Measurement(duration_s=sum(m.duration_s for m in phases.values()),
                       peak_rss_mb=max(m.peak_rss_mb for m in phases.values()))


def report_engine(title: str, phases: dict[str, Measurement], counts: dict, n_sessions: int, target: float | None):
    whole = total(phases)
    goal = f"   (target <= {target:.0f} s)" if target else ""
    print(f"  engine total       {whole.duration_s:8.2f} s{goal}")
    for name, m in phases.items():
        print(f"    {name:<16} {m.duration_s:8.2f} s   peak RSS {m.peak_rss_mb:7.0f} MiB")
    print(f"  engine peak RSS    {whole.peak_rss_mb:8.0f} MiB (this process)")
    print(f"  per session        {whole.duration_s / n_sessions * 1000:8.1f} ms")
    print(f"  rows {counts['rows_in']:,} in -> {counts['validated']:,} validated ({counts['flagged']:,} flagged), "
          f"{counts['quarantined']:,} quarantined; {counts['events']:,} events; "
          f"{counts['cleaned']:,} cleaned ({counts['filled']:,} filled)")
    if title:
        print(title)


STEP_DONE = re.compile(r'Finished execution of step "([^"]+)" in ([\d.]+)(ms|s)\.')


def cli(env: dict, log: Path, *args: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one `dagster asset materialize` run; prints its steps."""
    command = [DAGSTER, "asset", "materialize", "-f", "definitions.py", "-d", ".", "--select", ASSETS, *args]
    start = log.stat().st_size if log.exists() else 0
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WRAPPER, str(log), *command], cwd=REPO, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
        sys.stderr.write(tail + proc.stderr[-2000:])
        raise SystemExit(f"dagster asset materialize {' '.join(args)} failed (log: {log})")
    with log.open("rb") as fh:
        fh.seek(start)
        steps = {m[1]: float(m[2]) / (1000 if m[3] == "ms" else 1) for m in STEP_DONE.finditer(fh.read().decode(errors="replace"))}
    inside = sum(steps.values())
    print("    steps            " + ", ".join(f"{k} {v:.2f} s" for k, v in steps.items())
          + f"; outside steps (start-up, instance, event log) {wall - inside:.2f} s")
    return wall, mib(float(proc.stdout.strip().splitlines()[-1]))


def digests(store: TableStore, sessions) -> dict[str, str]:
    return {f"{t}/{s:%Y-%m-%d}": hashlib.sha256(store.partition_path(t, s).read_bytes()).hexdigest()
            for t in OUTPUTS for s in sessions}


def cli_env(tmp: Path, data_dir: Path) -> dict:
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    # PYTHONPATH: dagster.yaml's storage class is assets/instance.py (as the Makefile sets it).
    env = {**os.environ, "DAGSTER_HOME": str(home), "ALPHATWIN_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO)}
    for name in ("ALPHATWIN_SECONDARY_SOURCE", "ALPHATWIN_UNIVERSE", "ALPHATWIN_SOURCE", "ALPHATWIN_START"):
        env.pop(name, None)
    return env


def synthetic(args, tmp: Path) -> None:
    store = TableStore(tmp / "data")
    sessions = sessions_between(args.start, args.end)
    new = sessions_between(args.new, args.new)
    source = SyntheticSource(seed=7, n_symbols=args.symbols)
    symbols = source.universe()["symbol"].tolist()
    with measure() as cost:
        ingest(source, store, symbols, sessions)
    print(f"(a) synthetic backfill: {args.symbols} symbols x {len(sessions)} sessions "
          f"({sessions[0]:%Y-%m-%d}..{sessions[-1]:%Y-%m-%d})")
    print(f"  raw via ingest     {cost.duration_s:8.2f} s   (setup, not part of the figures below)")
    phases, counts = engine(store, sessions)
    report_engine("", phases, counts, len(sessions), TARGET_BACKFILL_S)
    top = counts["fired"].head(5)
    print("  rules fired        " + (", ".join(f"{r.rule_id} x{r.violations}" for r in top.itertuples()) or "none"))
    backfill_engine = total(phases).duration_s
    engine_bytes = digests(store, sessions)
    if not args.skip_checks:
        check_costs(counts["report"], tmp / "gx_docs")

    env = None
    if not args.skip_cli:
        env = cli_env(tmp, store.data_dir)
        wall, peak = cli(env, tmp / "cli.log", "--partition-range", f"{sessions[0]:%Y-%m-%d}...{sessions[-1]:%Y-%m-%d}")
        same = digests(store, sessions) == engine_bytes
        print(f"  CLI single-run     {wall:8.2f} s   (target <= {TARGET_BACKFILL_S:.0f} s; includes interpreter start, "
              "definitions load, 5 checks incl. great_expectations, per-partition metadata)")
        print(f"  CLI peak RSS       {peak:8.0f} MiB (dagster process)")
        print(f"  CLI per session    {wall / len(sessions) * 1000:8.1f} ms")
        print(f"  CLI files identical to the engine's: {'yes' if same else 'NO'}")
        backfill_cli = wall

    print(f"(b) one new session: {new[0]:%Y-%m-%d}")
    with measure() as cost:
        ingest(source, store, symbols, new)
    print(f"  raw via ingest     {cost.duration_s:8.2f} s   (setup)")
    phases, counts = engine(store, new)
    report_engine("", phases, counts, 1, TARGET_SESSION_S)
    single_engine = total(phases).duration_s
    if not args.skip_checks:
        check_costs(counts["report"], tmp / "gx_docs")
    per_session = backfill_engine / len(sessions)
    print(f"  ratio single / per-session-of-backfill (engine): {single_engine / per_session:8.1f}x "
          f"({single_engine * 1000:.0f} ms vs {per_session * 1000:.1f} ms)")
    if env is not None:
        wall, peak = cli(env, tmp / "cli.log", "--partition", f"{new[0]:%Y-%m-%d}")
        per_session_cli = backfill_cli / len(sessions)
        print(f"  CLI one partition  {wall:8.2f} s   (target <= {TARGET_SESSION_S:.0f} s)   peak RSS {peak:6.0f} MiB")
        print(f"  ratio single / per-session-of-backfill (CLI):    {wall / per_session_cli:8.1f}x "
              f"({wall * 1000:.0f} ms vs {per_session_cli * 1000:.1f} ms)")


def real(tmp: Path) -> None:
    if not SP500.exists():
        print(f"(c) real S&P 500 set: skipped, {SP500} is absent")
        return
    store = TableStore(tmp / "real")
    with measure() as cost:
        frame = pd.read_parquet(SP500).rename(columns={"dividend_amount": "dividend", "split_coefficient": "split_ratio"})
        frame["source"] = "sp500"
        with store.batch():
            for day, bars in frame.groupby("date", sort=True):
                store.write_partition(RAW, day, bars_to_arrow(bars))
    sessions = store.stored_sessions(RAW)
    print(f"(c) real S&P 500 set: {frame['symbol'].nunique()} symbols x {len(sessions)} sessions "
          f"({sessions[0]:%Y-%m-%d}..{sessions[-1]:%Y-%m-%d}), {len(frame):,} rows")
    print(f"  raw partitions     {cost.duration_s:8.2f} s   (setup: read + write {len(sessions)} files)")
    del frame
    phases, counts = engine(store, sessions)
    report_engine("", phases, counts, len(sessions), None)
    top = counts["fired"].head(8)
    print("  rules fired        " + (", ".join(f"{r.rule_id} x{r.violations}" for r in top.itertuples()) or "none"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--start", default="2020-01-02")
    parser.add_argument("--end", default="2024-12-31")
    parser.add_argument("--new", default="2025-01-02")
    parser.add_argument("--skip-cli", action="store_true")
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--skip-checks", action="store_true", help="do not time the checks' evidence")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory(prefix="bench_quality_") as tmp:
        synthetic(args, Path(tmp))
        if not args.skip_real:
            real(Path(tmp))
    print(f"(children's max RSS over the whole benchmark: {mib(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss):.0f} MiB; "
          f"load average {os.getloadavg()[0]:.2f} at the end)")


if __name__ == "__main__":
    main()
