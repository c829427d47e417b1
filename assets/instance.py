"""The instance's storage classes, named in dagster.yaml and dagster.postgres.yaml.

Every Dagster process loads the instance: the CLI, the webserver, the daemon, the code server and each
run worker. The webserver and the daemon never load the code location (definitions.py), so naming
these classes in the instance's yaml is how the launch fixes of ``assets/event_log.py`` and
``assets/partition_walks.py`` reach them: importing this module applies both (``install()``), and
``assets/run_workers.py``'s, which acts in code servers only. The classes are Dagster's SQLite and
Postgres storages, unchanged otherwise.

The module is imported by its name, ``assets.instance``: the repository root must be on
``PYTHONPATH`` (the Makefile, the Dockerfile and tests/conftest.py set it; ``dagster dev`` run from
the root has it already). Without it Dagster stops with "Couldn't import module assets.instance".
"""

from __future__ import annotations

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
