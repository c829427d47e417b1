"""Whole history through the CLI: launch overhead, per-step durations and peak RSS (issue 17, targets 1-2).

    .venv/bin/python benchmarks/bench_history.py [--start 2000-01-03 --end 2021-04-21 --symbols 0
        --launch-end 2026-12-04 --peer-end 2000-12-29 --skip-run --skip-launch --skip-peer --ui --ui-run --events 5359 --keep DIR]

Three measurements, each a real `dagster asset materialize --partition-range` of every
session-partitioned asset on a fresh SQLite instance (the repository's dagster.yaml):

1. launch, full range: 2 symbols over ``--start``..``--launch-end`` (2000-2026), stopped at the
   run's first STEP_START. Launch = command start -> first STEP_START (and -> RUN_START).
2. peer, same run: the same launch with Dagster's stock event-log writes and partition walks
   (assets/event_log.py and assets/partition_walks.py not installed) on the shorter ``--start``..``--peer-end``, both timed here; the stock launch grows
   with sessions x assets, so the full range would take hours.
3. the whole shared S&P 500 set (``--symbols 0`` = all 504) over ``--start``..``--end`` raw -> scanner
   in one run to the end: wall, launch, each step's duration from the event log, peak RSS of the
   command (largest process).
4. ``--ui``: the launch of 1. from the UI: `dagster dev` (webserver, daemon, code server) with the
   Makefile's environment, a backfill of the same assets and range launched through GraphQL as the
   UI does once `dagster dev`'s start-up work is done (``settle``), timed from the mutation to the
   backfill run's RUN_START and first STEP_START (the instance files make the backfill daemon look
   every 5 s and as soon as a backfill is added, see assets/instance.py).
5. ``--ui-run``: 3. launched from the UI the same way, timed from the mutation to the run's end.

Prints a table; asserts nothing. The machine is shared: the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SP500 = REPO.parent / "shared" / "data" / "sp500_daily_1999_2021.parquet"
SECTORS = REPO.parent / "shared" / "data" / "sp500_constituents.csv"
DAILY_ASSETS = ("raw_ohlcv,validated_ohlcv,quarantined_ohlcv,adjustment_factors,cleaned_ohlcv,features,"
                "scanner_results,symbol_context,sector_rotation,top_pairs")

# Run as a child: the dagster CLI in this process, stopped at the first STEP_START; "stock" leaves
# Dagster's own event-log writes in place (the peer).
CHILD = """
import os, sys, time
sys.path.insert(0, os.getcwd())
T0 = float(os.environ["BENCH_T0"])
if os.environ.get("BENCH_STOCK"):
    import assets.event_log as event_log, assets.partition_walks as partition_walks
    event_log.install = partition_walks.install = lambda: None
from dagster._core.instance import DagsterInstance
handle = DagsterInstance.handle_new_event
class Stop(BaseException):
    pass
def hook(self, event, **kwargs):
    handle(self, event, **kwargs)
    kind = event.dagster_event.event_type_value if event.dagster_event else None
    kind = "RUN_START" if kind == "PIPELINE_START" else kind
    if kind in ("RUN_START", "STEP_START"):
        print(f"BENCH {kind} {time.time() - T0:.3f}", flush=True)
        print(f"BENCH {kind}_CPU {time.process_time():.3f}", flush=True)
    if kind == "STEP_START" and os.environ.get("BENCH_STOP"):
        raise Stop()
DagsterInstance.handle_new_event = hook
from dagster._cli import main
sys.argv = ["dagster", *sys.argv[1:]]
try:
    main()
except (SystemExit, Stop):
    pass
"""


def prepare(work: Path, symbols: int) -> tuple[Path, Path, Path]:
    """The shared set as one canonical parquet file, the full universe and a 2-symbol one."""
    import pandas as pd
    import pyarrow.parquet as pq

    sys.path.insert(0, str(REPO))
    from alphatwin_pipelines.schema import bars_to_arrow, to_canonical

    bars = pd.read_parquet(SP500).rename(columns={"dividend_amount": "dividend", "split_coefficient": "split_ratio"})
    bars["source"] = "sp500"
    sectors = pd.read_csv(SECTORS)[["Symbol", "Sector"]]
    sectors = sectors[sectors["Symbol"].isin(bars["symbol"].unique())]
    if symbols:
        sectors = sectors.head(symbols)
    folder = work / "csv"
    folder.mkdir()
    pq.write_table(bars_to_arrow(to_canonical(bars[bars["symbol"].isin(sectors["Symbol"])])), folder / "sp500.parquet")
    sectors.to_csv(work / "universe.csv", index=False)
    sectors[sectors["Symbol"].isin(["AAPL", "MSFT"])].to_csv(work / "universe2.csv", index=False)
    return folder, work / "universe.csv", work / "universe2.csv"


def environment(work: Path, name: str, folder: Path, universe: Path, start: str) -> dict:
    home = work / name / "home"
    home.mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "ALPHATWIN_DATA_DIR": str(work / name / "data"),
           "ALPHATWIN_SOURCE": "csv", "ALPHATWIN_SOURCE_PATH": str(folder), "ALPHATWIN_UNIVERSE": str(universe),
           "ALPHATWIN_START": start}
    for name_ in ("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "DAGSTER_EVENT_BATCH_SIZE"):
        env.pop(name_, None)
    return env


def cli(env: dict, *args: str, stop: bool = False, stock: bool = False) -> dict:
    """Run the CLI in a child; return wall, the printed event times and the child's output."""
    env = {**env, "BENCH_T0": repr(time.time())}
    env.update({"BENCH_STOP": "1"} if stop else {})
    env.update({"BENCH_STOCK": "1"} if stock else {})
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, "asset", "materialize", "-f", "definitions.py", "-d", ".",
                           *args], cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    times = {}
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH "):
            _, kind, value = line.split()
            times.setdefault(kind, float(value))
    if not stop and proc.returncode != 0 or "STEP_START" not in times:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"dagster asset materialize {' '.join(args)} failed")
    return {"wall": wall, **times}


def step_durations(env: dict) -> dict[str, float]:
    """Each step's STEP_START -> STEP_SUCCESS from the run's event log."""
    os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        run = instance.get_runs(limit=1)[0]
        started, durations = {}, {}
        for record in instance.all_logs(run.run_id):
            event = record.dagster_event
            if event is None:
                continue
            if event.event_type_value == "STEP_START":
                started[event.step_key] = record.timestamp
            elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
                durations[event.step_key] = record.timestamp - started[event.step_key]
        return durations


LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on Error { message } } }
"""


def ui_launch(env: dict, start: str, end: str, timeout_s: float = 1800, stock: bool = False,
              to_end: bool = False) -> dict:
    """Seconds from launching a UI backfill to its run's RUN_START and first STEP_START (``to_end``: and to
    the run's end, "run finished", with its "status").

    ``stock``: the peer, Dagster's own storage (no ``storage:`` block, so no assets/instance.py in the
    webserver and the daemon) with the variable the Makefile exported before it.
    """
    sys.path.insert(0, str(REPO))
    import dagster as dg
    import yaml
    from tests.ui_helpers import GraphQL, free_port, start_process_group, stop_process_group, tail

    env = {**env, "PYTHONPATH": str(REPO)}  # as the Makefile exports it (the instance's storage class)
    home = Path(env["DAGSTER_HOME"])
    if stock:
        config = yaml.safe_load((home / "dagster.yaml").read_text())
        config.pop("storage")
        (home / "dagster.yaml").write_text(yaml.safe_dump(config))
        env["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] = "1"
    os.environ["DAGSTER_HOME"] = str(home)  # dagster.yaml's storage base_dir, for this process's instances
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs_count()  # create the storages before the server's processes race to
    port, log = free_port(), home / "dagster_dev.log"
    server = start_process_group([str(Path(sys.executable).parent / "dagster"), "dev", "-h", "127.0.0.1", "-p",
                                  str(port), "-w", "workspace.yaml"], cwd=REPO, env=env, log=log)
    try:
        gql = GraphQL(f"http://127.0.0.1:{port}")
        gql.wait_until_up(server, log, 600)
        settled = settle(server.pid)
        params = {"partitionsByAssets": [{"assetKey": {"path": [name]}, "partitions": {"range": {"start": start, "end": end}}}
                                         for name in DAILY_ASSETS.split(",")], "title": "bench_history"}
        cpu_before = cpu_by_role(server.pid)
        launched = time.time()
        # The webserver validates the whole range before it answers: allow it more than the helper's 60 s.
        request = urllib.request.Request(f"{gql.base_url}/graphql", headers={"Content-Type": "application/json"},
                                         data=json.dumps({"query": LAUNCH_BACKFILL, "variables": {"params": params}}).encode())
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            result = json.load(response)["data"]["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise SystemExit(f"backfill refused: {result}")
        found: dict = {"mutation answered": time.time() - launched, "settled": settled}
        with dg.DagsterInstance.from_config(str(home)) as instance:
            while "STEP_START" not in found and time.time() - launched < timeout_s:
                time.sleep(0.5)
                for run in instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": result["backfillId"]})):
                    record = instance.get_run_record_by_id(run.run_id)
                    found.setdefault("run created", record.create_timestamp.timestamp() - launched)
                    for entry in instance.all_logs(run.run_id, of_type={dg.DagsterEventType.RUN_START,
                                                                         dg.DagsterEventType.STEP_START}):
                        kind = "RUN_START" if entry.dagster_event.event_type_value == "PIPELINE_START" else "STEP_START"
                        found.setdefault(kind, entry.timestamp - launched)
        if "STEP_START" not in found:
            raise SystemExit(f"the backfill's run did not start a step within {timeout_s:.0f} s:\n{tail(log)}")
        with dg.DagsterInstance.from_config(str(home)) as instance:
            while to_end and "status" not in found and time.time() - launched < timeout_s:
                time.sleep(2)
                run = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": result["backfillId"]}))[0]
                if run.is_finished:
                    found.update({"run finished": time.time() - launched, "status": run.status.value})
        cpu_after = cpu_by_role(server.pid)
        found.update({f"{role} CPU": cpu_after.get(role, 0.0) - cpu_before.get(role, 0.0) for role in cpu_after})
        return found
    finally:
        stop_process_group(server)


def settle(group: int, idle_cpu_s: float = 0.3, window_s: float = 3.0, limit_s: float = 120.0) -> float:
    """Seconds until `dagster dev`'s start-up work is done (its processes used < ``idle_cpu_s`` of CPU over
    ``window_s``), as when someone opens the UI and then launches: the code server's forkserver loading
    the code and the daemon's first walk happen in the background after the UI answers."""
    started = time.time()
    before = sum(cpu_by_role(group, every=True).values())
    while time.time() - started < limit_s:
        time.sleep(window_s)
        now = sum(cpu_by_role(group, every=True).values())
        if now - before < idle_cpu_s:
            break
        before = now
    return time.time() - started


def cpu_by_role(group: int, every: bool = False) -> dict[str, float]:
    """User + system CPU seconds of `dagster dev`'s webserver and daemon processes (Linux /proc); ``every``:
    of its other processes too (code server, forkserver, run workers) under "other"."""
    ticks, cpu = os.sysconf("SC_CLK_TCK"), {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            args = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(fields[2]) != group:  # fields[2]: the process group
            continue
        role = "webserver" if b"dagster_webserver" in args else "daemon" if b"dagster._daemon" in args else None
        role = role or ("other" if every else None)
        if role:
            cpu[role] = cpu.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return cpu


EVENTS_CHILD = """
import os, sys, tempfile, time
sys.path.insert(0, os.getcwd())
import dagster as dg
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.events.log import EventLogEntry
mode, n = sys.argv[1], int(sys.argv[2])
if mode == "ours":
    from assets import event_log
    event_log.install()
def entry(i):
    data = StepMaterializationData(dg.AssetMaterialization("raw_ohlcv", partition=f"p{i:05d}", metadata={"rows": 500}))
    event = DagsterEvent(event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value, job_name="j", step_key="s",
                         event_specific_data=data)
    return EventLogEntry(user_message="", level=10, job_name="j", run_id="r", timestamp=time.time(), error_info=None,
                         dagster_event=event, step_key="s")
with tempfile.TemporaryDirectory() as home, dg.DagsterInstance.from_config(home) as instance:
    events = [entry(i) for i in range(n + 1)]
    instance.event_log_storage.store_event(events[0])  # creates the run's shard
    wall, cpu = time.perf_counter(), time.process_time()
    instance.event_log_storage.store_event_batch(events[1:])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert len(instance.get_materialized_partitions(dg.AssetKey("raw_ohlcv"))) == n + 1
    print(f"RESULT {wall:.2f} {cpu:.2f}")
"""


def event_writes(mode: str, n: int) -> tuple[float, float]:
    """Wall and CPU seconds to store one step's n per-partition materialisations on a SQLite instance."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "DAGSTER_EVENT_BATCH_SIZE")}
    proc = subprocess.run([sys.executable, "-c", EVENTS_CHILD, mode, str(n)], cwd=REPO, env=env,
                          capture_output=True, text=True)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(proc.stderr[-3000:])
    wall, cpu = map(float, line.split()[1:])
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--start", default="2000-01-03")
    parser.add_argument("--end", default="2021-04-21")
    parser.add_argument("--launch-end", default="2026-12-04")
    parser.add_argument("--peer-end", default="2000-12-29")
    parser.add_argument("--symbols", type=int, default=0, help="first N symbols of the shared set; 0 = all")
    parser.add_argument("--skip-launch", action="store_true")
    parser.add_argument("--skip-run", action="store_true")
    parser.add_argument("--skip-peer", action="store_true", help="time only our full-range launch")
    parser.add_argument("--ui", action="store_true", help="also time the launch of a UI backfill (dagster dev)")
    parser.add_argument("--ui-peer", action="store_true",
                        help="with --ui, also time it on Dagster's own storage (the peer; ~15 min at load 6)")
    parser.add_argument("--ui-run", action="store_true", help="the whole run (--start..--end) launched from the UI")
    parser.add_argument("--events", type=int, default=0,
                        help="also time storing N materialisations of one step: ours, and stock on N/5 (peer)")
    parser.add_argument("--keep", help="a folder to keep the instances and data in (default: a temporary one)")
    args = parser.parse_args()
    if not SP500.exists():
        raise SystemExit(f"{SP500} not found: the shared data set is needed")
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench_history_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"load average {os.getloadavg()[0]:.1f} at start; work folder {work}")
    folder, universe, two = prepare(work, args.symbols)
    rows = []
    if not args.skip_launch:
        launches = [("launch", args.launch_end, False), ("peer", args.peer_end, True),
                    ("ours_peer_range", args.peer_end, False)]
        for name, end, stock in launches[:1] if args.skip_peer else launches:
            env = environment(work, name, folder, two, args.start)
            got = cli(env, "--select", DAILY_ASSETS, "--partition-range", f"{args.start}...{end}", stop=True,
                      stock=stock)
            label = f"launch {args.start}..{end}, " + ("Dagster's stock event log (peer)" if stock else "ours")
            rows.append((label, f"{got['STEP_START']:.1f} s to the first step (run start {got['RUN_START']:.1f} s; "
                                f"CPU {got['STEP_START_CPU']:.1f} s, which the load changes less)"))
            print(*rows[-1], sep=": ", flush=True)
    if args.events:
        for mode, n in (("ours", args.events), ("stock", max(1, args.events // 5))):
            wall, cpu = event_writes(mode, n)
            rows.append((f"{n} materialisations of one step, {mode}",
                         f"{wall:.1f} s wall, {cpu:.1f} s CPU ({wall / n * 1000:.2f} ms, {cpu / n * 1000:.2f} ms CPU each)"))
            print(*rows[-1], sep=": ", flush=True)
    for stock in (False, True) if args.ui and args.ui_peer else (False,) if args.ui else ():
        env = environment(work, "ui_stock" if stock else "ui", folder, two, args.start)
        got = ui_launch(env, args.start, args.launch_end, stock=stock)
        rows.append((f"launch {args.start}..{args.launch_end} from the UI (daemon backfill), "
                     + ("Dagster's own storage (peer)" if stock else "ours"),
                     f"{got['STEP_START']:.1f} s to the first step (launched {got['settled']:.0f} s after the UI "
                     f"answered, once its start-up work was done; launch answered {got['mutation answered']:.1f} s, "
                     f"run created {got['run created']:.1f} s, run start {got['RUN_START']:.1f} s; CPU of "
                     f"webserver {got['webserver CPU']:.1f} s, daemon {got['daemon CPU']:.1f} s)"))
        print(*rows[-1], sep=": ", flush=True)
    if args.ui_run:  # the whole run, launched from the UI
        env = environment(work, "ui_history", folder, universe, args.start)
        cli(env, "--select", "universe")
        got = ui_launch(env, args.start, args.end, to_end=True, timeout_s=3600)
        rows.append((f"whole run {args.start}..{args.end} from the UI, wall", f"{got['run finished']:.1f} s, "
                     f"{got['status']} (first step at {got['STEP_START']:.1f} s)"))
        rows.extend((f"  step {step}", f"{seconds:.1f} s") for step, seconds in step_durations(env).items())
    if not args.skip_run:
        env = environment(work, "history", folder, universe, args.start)
        cli(env, "--select", "universe")
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        got = cli(env, "--select", DAILY_ASSETS, "--partition-range", f"{args.start}...{args.end}")
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        rows.append((f"whole run {args.start}..{args.end}, wall", f"{got['wall']:.1f} s"))
        rows.append(("  launch (to the first step)", f"{got['STEP_START']:.1f} s (CPU {got['STEP_START_CPU']:.1f} s)"))
        for step, seconds in step_durations(env).items():
            rows.append((f"  step {step}", f"{seconds:.1f} s"))
        rows.append(("  peak RSS (largest process)", f"{max(peak, before) / 1024 ** 2:.2f} GiB"
                     + ("" if peak > before else " (an earlier child's; this run's is lower)")))
    width = max(len(r[0]) for r in rows)
    print(f"load average {os.getloadavg()[0]:.1f} at end")
    for label, value in rows:
        print(f"{label:{width}}  {value}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
