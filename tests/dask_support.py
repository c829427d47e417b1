"""A real Dask cluster as docker-compose runs it: ``dask scheduler`` and two ``dask worker``
processes started with their command-line tools on 127.0.0.1 (free ports), workers with cwd =
the repository root and it on ``PYTHONPATH`` (so they import this checkout, not an installed
copy), ``ALPHATWIN_DASK_SCHEDULER`` set while the cluster is up, and everything stopped at the
end. ``kill_worker_running`` SIGKILLs a worker process while it runs a given kind of task.

Start it once per module (``dask_cluster``): the three processes take a few seconds to start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.postgres_support import BIN, REPO_ROOT, _free_port, _process

distributed = pytest.importorskip("distributed")

DASK = BIN / "dask"
N_WORKERS = 2


@dataclass
class CliCluster:
    address: str
    client: object  # distributed.Client
    logs: list[Path]

    def tails(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.logs if p.exists())


@contextlib.contextmanager
def cli_cluster(log_dir: Path, n_workers: int = N_WORKERS):
    """Scheduler and workers as in docker-compose.yml (one process, one thread each, no dashboard)."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    logs = [log_dir / "dask-scheduler.log", *(log_dir / f"dask-worker-{i}.log" for i in range(1, n_workers + 1))]
    with contextlib.ExitStack() as stack:  # closed in reverse: client, workers, scheduler
        stack.enter_context(_process([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                      "--no-dashboard"], env, logs[0]))
        for i, log in enumerate(logs[1:], start=1):
            stack.enter_context(_process([str(DASK), "worker", address, "--name", f"dask-worker-{i}", "--host",
                                          "127.0.0.1", "--nworkers", "1", "--nthreads", "1", "--memory-limit", "2GiB",
                                          "--no-dashboard"], env, log))
        cluster = CliCluster(address, None, logs)
        try:
            cluster.client = stack.enter_context(distributed.Client(address, timeout=60))
            cluster.client.wait_for_workers(n_workers, timeout=120)
        except Exception as exc:  # noqa: BLE001 - show the processes' own words
            pytest.fail(f"the dask cluster at {address} did not come up: {exc}\n{cluster.tails()}")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("ALPHATWIN_DASK_SCHEDULER", address)
            yield cluster


def worker_pids(client) -> dict[str, int]:
    """The pid of each worker process (the process that runs tasks, under its nanny)."""
    return client.run(os.getpid)


def kill_worker_running(client, key_prefix: str, timeout: float = 120) -> tuple[str, list[str]]:
    """SIGKILL the worker that is processing a task whose key starts with ``key_prefix`` as soon as
    the scheduler shows one; the worker's address and the tasks it held. Its nanny starts a new
    worker process; the scheduler reschedules what the dead one held."""
    pids = worker_pids(client)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for address, keys in client.processing().items():
            held = [str(k) for k in keys if str(k).startswith(key_prefix)]
            if held and address in pids:
                os.kill(pids[address], signal.SIGKILL)
                return address, held
        time.sleep(0.005)
    raise TimeoutError(f"no worker processed a {key_prefix!r} task within {timeout} s")


@contextlib.contextmanager
def killing_a_worker(client, key_prefix: str):
    """Run the body while a thread kills the first worker seen processing a ``key_prefix`` task;
    yields a dict that holds ``address`` and ``held`` afterwards. The cluster has its workers back
    when the block ends."""
    outcome: dict = {}

    def kill():
        try:
            outcome["address"], outcome["held"] = kill_worker_running(client, key_prefix)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    yield outcome
    thread.join(5)
    assert "error" not in outcome, outcome.get("error")
    assert outcome.get("held"), "no worker was killed while the stage ran"
    wait_for_replacement(client, outcome["address"])


def wait_for_replacement(client, dead: str, timeout: float = 120) -> None:
    """Until the scheduler has forgotten ``dead`` and counts ``N_WORKERS`` workers again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        if dead not in workers and len(workers) == N_WORKERS:
            return
        time.sleep(0.1)
    raise TimeoutError(f"the nanny did not replace the killed worker {dead} within {timeout} s")
