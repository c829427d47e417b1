"""assets/run_workers.py: a code server's run workers are forks of a process with the code loaded.

A child process launches one run of a tiny code location through Dagster's own path: the location in
its gRPC code server (as `dagster dev` and `dagster api grpc` serve it), the launch mutation, the
default run launcher asking the server to start the run. The location notes every process that loads
it; its asset notes the worker's pid and parent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import yaml

from tests.conftest import REPO_ROOT

LOCATION = textwrap.dedent("""
    import os
    from assets import instance  # noqa: F401 - as definitions.py does
    import dagster as dg

    with open(os.environ["TEST_LOADS"], "a") as loads:
        loads.write(f"{os.getpid()}\\n")

    @dg.asset
    def where() -> None:
        with open(os.environ["TEST_WORKER"], "w") as out:
            out.write(f"{os.getpid()} {os.getppid()}")

    defs = dg.Definitions(assets=[where], executor=dg.in_process_executor)  # as definitions.py
""")

LAUNCH = textwrap.dedent("""
    import json, sys, time
    import dagster as dg
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import PythonFileTarget
    from dagster_graphql.test.utils import execute_dagster_graphql

    MUTATION = '''mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
        __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }'''
    selector = {"repositoryLocationName": "tiny", "repositoryName": "__repository__", "jobName": "__ASSET_JOB"}
    instance = dg.DagsterInstance.get()
    target = PythonFileTarget(python_file=sys.argv[1], attribute=None, working_directory=".", location_name="tiny")
    with WorkspaceProcessContext(instance, target) as workspace:
        result = execute_dagster_graphql(workspace.create_request_context(), MUTATION, {"params": {"selector": selector}})
        assert result.data["launchRun"]["__typename"] == "LaunchRunSuccess", result
        run_id = result.data["launchRun"]["run"]["runId"]
        deadline = time.time() + 120
        while not instance.get_run_by_id(run_id).is_finished and time.time() < deadline:
            time.sleep(0.5)
        print("RESULT", json.dumps({"status": instance.get_run_by_id(run_id).status.value}))
""")


def _launch_one_run(tmp_path, **env_extra) -> dict:
    home = tmp_path / "home"
    home.mkdir()
    config = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    # No daemon here: the synchronous coordinator launches the run at once.
    config["run_coordinator"] = {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"}
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    location = tmp_path / "tiny_location.py"
    location.write_text(LOCATION)
    loads, worker = tmp_path / "loads.txt", tmp_path / "worker.txt"
    env = {**os.environ, "DAGSTER_HOME": str(home), "TEST_LOADS": str(loads), "TEST_WORKER": str(worker), **env_extra}
    proc = subprocess.run([sys.executable, "-c", LAUNCH, str(location)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    got = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT ")).removeprefix("RESULT "))
    pid, parent = map(int, worker.read_text().split())
    return {**got, "loads": [int(x) for x in loads.read_text().split()], "worker": pid, "worker_parent": parent}


def test_a_run_worker_is_forked_from_the_preloaded_forkserver(tmp_path):
    got = _launch_one_run(tmp_path)
    assert got["status"] == "SUCCESS"
    # Loaded by the code server and by its forkserver, not again by the worker: a fork of the latter.
    assert len(got["loads"]) == 2, got
    code_server, forkserver = got["loads"]
    assert got["worker"] not in got["loads"] and got["worker_parent"] == forkserver != code_server


def test_spawn_keeps_dagsters_own_run_worker_that_loads_the_code_itself(tmp_path):
    got = _launch_one_run(tmp_path, ALPHATWIN_RUN_WORKER_START="spawn")
    assert got["status"] == "SUCCESS"
    assert len(got["loads"]) == 2, got
    code_server, worker = got["loads"]
    assert got["worker"] == worker and got["worker_parent"] == code_server
