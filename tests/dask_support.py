"""A real Dask cluster as docker-compose runs it: ``dask scheduler`` and two ``dask worker``
processes started with their command-line tools, with the very commands and Dask settings
(``DASK_*``) docker-compose.yml gives (read from it), on 127.0.0.1 (a free port for the
scheduler, any for the workers), workers with cwd = the repository root and it on ``PYTHONPATH``
(so they import this checkout, not an installed copy), ``ALPHATWIN_DASK_SCHEDULER`` set while the
cluster is up, and everything stopped at the end. ``kill_worker_running`` SIGKILLs a worker
process while it runs a given kind of task.

Start it once per module (a module fixture around ``cli_cluster``): the processes take seconds to start.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.postgres_support import BIN, REPO_ROOT, _free_port, _process

distributed = pytest.importorskip("distributed")

DASK = BIN / "dask"
COMPOSE = REPO_ROOT / "docker-compose.yml"
COMPOSE_SCHEDULER = "tcp://dask-scheduler:8786"
N_WORKERS = 2  # the compose file's dask-worker-1 and dask-worker-2


@dataclass
class CliCluster:
    address: str
    client: object  # distributed.Client
    logs: list[Path]

    def tails(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.logs if p.exists())


def _with(args: list[str], option: str, value: str) -> list[str]:
    """``args`` with ``option``'s value replaced (the option must be there: compose and tests agree)."""
    assert option in args, f"docker-compose.yml's dask command {args} lacks {option}"
    i = args.index(option)
    return [*args[: i + 1], value, *args[i + 2 :]]


def compose_dask_commands(port: int) -> tuple[list[str], dict[str, list[str]]]:
    """The scheduler's and each worker's command exactly as docker-compose.yml runs them, ``${VAR:-default}``
    at its default, bound to 127.0.0.1:``port`` instead of the compose network's dask-scheduler:8786."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]

    def command(service: str) -> list[str]:
        args = [re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(a)) for a in services[service]["command"]]
        assert args[0] == "dask", f"{service} does not start with the dask command-line tool: {args}"
        return [str(DASK), *args[1:]]

    scheduler = _with(_with(command("dask-scheduler"), "--host", "127.0.0.1"), "--port", str(port))
    workers = {}
    for service in sorted(name for name in services if name.startswith("dask-worker")):
        args = command(service)
        assert COMPOSE_SCHEDULER in args, f"{service} does not connect to {COMPOSE_SCHEDULER}: {args}"
        workers[service] = [f"tcp://127.0.0.1:{port}" if a == COMPOSE_SCHEDULER else a for a in args] + ["--host", "127.0.0.1"]
    return scheduler, workers


def compose_dask_env(service: str) -> dict[str, str]:
    """The Dask configuration variables (``DASK_*``) docker-compose.yml gives ``service``."""
    env = yaml.safe_load(COMPOSE.read_text())["services"][service].get("environment") or {}
    return {key: str(value) for key, value in env.items() if key.startswith("DASK_")}


@contextlib.contextmanager
def cli_cluster(log_dir: Path):
    """Scheduler and workers started with docker-compose.yml's own commands (``compose_dask_commands``)
    and Dask settings (``compose_dask_env``)."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    scheduler, workers = compose_dask_commands(port)
    logs = [log_dir / "dask-scheduler.log", *(log_dir / f"{name}.log" for name in workers)]
    with contextlib.ExitStack() as stack:  # closed in reverse: client, workers, scheduler
        stack.enter_context(_process(scheduler, {**env, **compose_dask_env("dask-scheduler")}, logs[0]))
        for (service, args), log in zip(workers.items(), logs[1:]):
            stack.enter_context(_process(args, {**env, **compose_dask_env(service)}, log))
        cluster = CliCluster(address, None, logs)
        try:
            cluster.client = stack.enter_context(distributed.Client(address, timeout=60))
            cluster.client.wait_for_workers(len(workers), timeout=120)
        except Exception as exc:  # noqa: BLE001 - show the processes' own words
            pytest.fail(f"the dask cluster at {address} did not come up: {exc}\n{cluster.tails()}")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("ALPHATWIN_DASK_SCHEDULER", address)
            yield cluster


def worker_pids(client) -> dict[str, int]:
    """The pid of each worker process (the process that runs tasks, under its nanny)."""
    return client.run(os.getpid)


def kill_worker_running(client, key_prefix: str, timeout: float = 120, when=None) -> tuple[str, list[str]]:
    """SIGKILL the worker that is processing a task whose key starts with ``key_prefix`` as soon as
    the scheduler shows one (and ``when()``, if given, is true); the worker's address and the tasks
    it held. Its nanny starts a new worker process; the scheduler reschedules what the dead one held."""
    pids = worker_pids(client)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if when is not None and not when():
            time.sleep(0.005)
            continue
        for address, keys in client.processing().items():
            held = [str(k) for k in keys if str(k).startswith(key_prefix)]
            if held and address in pids:
                os.kill(pids[address], signal.SIGKILL)
                return address, held
        time.sleep(0.005)
    raise TimeoutError(f"no worker processed a {key_prefix!r} task within {timeout} s")


@contextlib.contextmanager
def killing_a_worker(client, key_prefix: str, when=None):
    """Run the body while a thread kills the first worker seen processing a ``key_prefix`` task (once ``when()``);
    yields a dict that holds ``address`` and ``held`` afterwards. The cluster has its workers back
    when the block ends."""
    outcome: dict = {}

    def kill():
        try:
            outcome["address"], outcome["held"] = kill_worker_running(client, key_prefix, when=when)
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
