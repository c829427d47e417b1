"""The instance's storage classes, named in dagster.yaml and dagster.postgres.yaml.

Every Dagster process loads the instance: the CLI, the webserver, the daemon, the code server and each
run worker. The webserver and the daemon never load the code location (definitions.py), so naming
these classes in the instance's yaml is how the launch fixes of ``assets/event_log.py`` and
``assets/partition_walks.py`` reach them: importing this module applies both (``install()``), and
``assets/run_workers.py``'s, which acts in code servers only; in the daemon it also makes the backfill
daemon look sooner (below). The classes are Dagster's SQLite and Postgres storages, unchanged otherwise.

The module is imported by its name, ``assets.instance``: the repository root must be on
``PYTHONPATH`` (the Makefile, the Dockerfile and tests/conftest.py set it; ``dagster dev`` run from
the root has it already). Without it Dagster stops with "Couldn't import module assets.instance".
"""

from __future__ import annotations

import time
import warnings

import dagster
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

from assets import event_log, partition_walks, run_workers

# The patches replace Dagster internals read in this series (tests/test_instance.py pins their source).
DAGSTER_SERIES = "1.13."
# Dagster's backfill daemon looks for new backfills every 30 s (DEFAULT_DAEMON_INTERVAL_SECONDS, not
# configurable), so a UI launch waited 0-30 s for it. Each look while a single-run backfill of 2000-2026
# is in progress costs ~0.3 s of CPU, so every 5 s is ~6 % of a core during a backfill. The constant's
# only other reader is the asset daemon's default interval, which the instance files pin to 30 s.
BACKFILL_POLL_SECONDS = 5
# Between two looks the backfill daemon checks this often whether a backfill was added (one count query)
# and looks at once if one was: a UI launch waits 0-1 s for the daemon instead of 0-5 s.
NEW_BACKFILL_CHECK_SECONDS = 1.0


class WakeOnNewBackfill:
    """The backfill daemon loop's shutdown event, whose ``wait`` also ends when a backfill is added.

    ``mark()`` (at each look's start) takes the count of backfills the look will see.
    """

    def __init__(self, shutdown_event, instance) -> None:
        self._shutdown, self._instance, self._seen = shutdown_event, instance, None

    def is_set(self) -> bool:
        return self._shutdown.is_set()

    def set(self) -> None:
        self._shutdown.set()

    def mark(self) -> None:
        self._seen = self._count()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = time.monotonic() + (BACKFILL_POLL_SECONDS if timeout is None else timeout)
        while (remaining := deadline - time.monotonic()) > 0:
            if self._shutdown.wait(min(NEW_BACKFILL_CHECK_SECONDS, remaining)):
                return True
            count = self._count()
            if count is not None and self._seen is not None and count > self._seen:
                return False
        return self._shutdown.is_set()

    def _count(self) -> int | None:
        try:
            return self._instance.get_backfills_count()
        except Exception:  # noqa: BLE001 - the daemon's own look every BACKFILL_POLL_SECONDS still comes
            return None


def _install_backfill_wakeup() -> None:
    from dagster._daemon.daemon import BackfillDaemon, SpanMarker

    core_loop = BackfillDaemon.core_loop

    def waking_core_loop(self, workspace_process_context, shutdown_event):
        event = WakeOnNewBackfill(shutdown_event, workspace_process_context.instance)
        for item in core_loop(self, workspace_process_context, event):
            if item is SpanMarker.START_SPAN:
                event.mark()
            yield item

    BackfillDaemon.core_loop = waking_core_loop


def install() -> None:
    """Apply the modules' changes in this process, when Dagster is the series they were written for.

    On another Dagster the stock behaviour stays (correct, but slow launches of long ranges) and a
    warning says what to do.
    """
    if not dagster.__version__.startswith(DAGSTER_SERIES):
        warnings.warn(f"assets/instance.py: Dagster {dagster.__version__} is not {DAGSTER_SERIES}x, so the launch "
                      "fixes of assets/event_log.py, assets/partition_walks.py and assets/run_workers.py are not "
                      "applied; run tests/test_instance.py and update DAGSTER_SERIES once the patched internals are re-checked",
                      stacklevel=2)
        return
    event_log.install()
    partition_walks.install()
    partition_walks.install_daemon_warmup()
    run_workers.install()
    import dagster._daemon.controller as controller

    controller.DEFAULT_DAEMON_INTERVAL_SECONDS = BACKFILL_POLL_SECONDS
    _install_backfill_wakeup()


install()


class SqliteStorage(DagsterSqliteStorage):
    """``storage: sqlite:`` (Dagster's default local storage), with this project's changes applied."""

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls.from_local(inst_data=inst_data, **config_value)


class PostgresStorage(DagsterPostgresStorage):
    """``storage: postgres:`` (dagster-postgres), with this project's changes applied."""

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        # DagsterPostgresStorage.from_config_value, building this class instead of its own.
        return cls(postgres_url=pg_url_from_config(config_value), inst_data=inst_data,
                   should_autocreate_tables=config_value.get("should_autocreate_tables", True),
                   token_provider=get_token_provider_from_config(config_value))
