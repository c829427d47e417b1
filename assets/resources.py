"""Configurable resources. Every setting comes from an environment variable through EnvVar.

When a variable is unset its default applies, so a fresh clone runs offline on the synthetic
market with data under the repository's ``data/``.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from alphatwin_pipelines.sources import BarSource, SourceConfigError, make_source
from alphatwin_pipelines.data_dir import DATA_DIR_ENV, resolve_data_dir, state_dir
from alphatwin_pipelines.storage import TableStore

REPO_ROOT = Path(__file__).resolve().parents[1]


def env_or(name: str, default):
    """``EnvVar(name)`` when the variable is set (shown as such in the UI), else ``default``."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def env_int_or(name: str, default: int):
    """``EnvVar.int(name)`` when the variable is set, else ``default`` (a plain EnvVar fails an int field)."""
    return dg.EnvVar.int(name) if os.environ.get(name) else default


class StorageResource(dg.ConfigurableResource):
    """Where every table lives (``ALPHATWIN_DATA_DIR``; unset, ``storage.resolve_data_dir`` decides)."""

    data_dir: str | None = None

    def setup_for_execution(self, context) -> None:
        # Every step that materialises an asset starts here, before any backtest imports numba.
        from alphatwin_pipelines.numba_cache import configure_numba_cache

        configure_numba_cache(self.path())

    def path(self) -> Path:
        return resolve_data_dir(self.data_dir)

    def store(self) -> TableStore:
        return TableStore(self.path())


class MarketDataResource(dg.ConfigurableResource):
    """Which provider supplies raw bars, and for which universe."""

    source: str = "synthetic"
    source_path: str | None = None
    universe: str | None = None
    synthetic_seed: int | None = None  # None: the synthetic source's default
    synthetic_symbols: int = 1000
    synthetic_defects: str | None = None  # a rate of injected data defects; None: the source's default, "0": none
    polygon_api_key: str | None = None
    polygon_base_url: str | None = None
    polygon_calls_per_minute: int = 5
    yfinance_requests_per_hour: int = 2000
    secondary_source: str | None = None
    secondary_source_path: str | None = None

    def build_source(self) -> BarSource:
        return self._build(self.source, self.source_path)

    def build_secondary_source(self) -> BarSource | None:
        """The source to reconcile against, when one is configured (ALPHATWIN_SECONDARY_SOURCE)."""
        return self._build(self.secondary_source, self.secondary_source_path) if self.secondary_source else None

    def _build(self, kind: str, path: str | None) -> BarSource:
        kind = kind.strip().lower()
        if kind == "synthetic":
            settings = {"n_symbols": self.synthetic_symbols}
            if self.synthetic_seed is not None:
                settings["seed"] = self.synthetic_seed
            if self.synthetic_defects not in (None, ""):
                settings["defects"] = _rate(self.synthetic_defects)
            return make_source(kind, **settings)
        if kind == "csv":
            return make_source(kind, path=path or "")
        if kind == "yfinance":
            return make_source(kind, requests_per_hour=self.yfinance_requests_per_hour)
        if kind == "polygon":
            return make_source(
                kind,
                api_key=self.polygon_api_key,
                base_url=self.polygon_base_url,
                calls_per_minute=self.polygon_calls_per_minute,
            )
        return make_source(kind)


def _rate(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SourceConfigError(f"ALPHATWIN_SYNTHETIC_DEFECTS must be a number such as 0.0005 (0: no defects), got {text!r}") from None


class DaskResource(dg.ConfigurableResource):
    """Where symbol shards run: a new LocalCluster sized to the machine, or an existing
    scheduler (``ALPHATWIN_DASK_SCHEDULER``) when one outgrows a single machine. The scanner
    always runs on Dask (``client``); the feature shards and the Optuna studies go to the
    cluster only when a scheduler is configured and stay in process otherwise (``cluster_client``)."""

    scheduler_address: str | None = None
    n_workers: int | None = None

    @contextmanager
    def client(self):
        from alphatwin_pipelines.scanner.dask_runner import connect

        client = connect(self.scheduler_address) if self.scheduler_address else connect(n_workers=self.n_workers)
        try:
            yield client
        finally:
            client.close()

    @contextmanager
    def cluster_client(self):
        """A client of the configured scheduler, or ``None`` (the work stays in process) without one."""
        if not self.scheduler_address:
            yield None
            return
        with self.client() as client:
            yield client


class DropFolderResource(dg.ConfigurableResource):
    """Where people drop CSV bar files for ingestion (``ALPHATWIN_DROP_DIR``, default ``<data_dir>/drop``)."""

    path: str | None = None

    def folder(self, storage: StorageResource) -> Path:
        return Path(self.path) if self.path else state_dir(storage.path()) / "drop"


class FailureWebhookResource(dg.ConfigurableResource):
    """Where run failures are POSTed (``ALPHATWIN_FAILURE_WEBHOOK``); unset, they are only logged to a file."""

    url: str | None = None
    timeout_s: float = 10.0


class BrokerResource(dg.ConfigurableResource):
    """Where orders go: ``paper`` (the SQL ledger, ``ALPHATWIN_LEDGER_URL``, default
    ``sqlite:///<data_dir>/paper_ledger.db``) or ``alpaca`` (Alpaca's paper API; needs
    ``ALPACA_API_KEY`` and ``ALPACA_SECRET_KEY``, ``ALPACA_BASE_URL`` overrides the endpoint).
    The audit log always lives in the ledger database."""

    kind: str = "paper"
    ledger_url: str | None = None
    initial_cash: float = 100_000.0
    alpaca_api_key: str | None = None
    alpaca_secret_key: str | None = None
    alpaca_base_url: str | None = None

    def build(self, data_dir: Path):
        """(broker, ledger engine) for this run."""
        from alphatwin_pipelines.execution import PaperBroker, default_ledger_url, open_ledger

        url = self.ledger_url or default_ledger_url(data_dir)
        kind = self.kind.strip().lower()
        if kind == "paper":
            broker = PaperBroker(url, initial_cash=self.initial_cash)
            return broker, broker.engine
        if kind == "alpaca":
            from alphatwin_pipelines.execution.alpaca import AlpacaBroker

            ledger = open_ledger(url, initial_cash=self.initial_cash)
            return AlpacaBroker.from_keys(self.alpaca_api_key, self.alpaca_secret_key, ledger,
                                          url=self.alpaca_base_url), ledger
        raise ValueError(f"unknown broker kind {self.kind!r} (ALPHATWIN_BROKER): use 'paper' or 'alpaca'")


class OptunaResource(dg.ConfigurableResource):
    """Where Optuna studies persist (``ALPHATWIN_OPTUNA_STORAGE``, an RDB URL such as
    ``postgresql://user:pass@host/db``; default ``sqlite:///<data_dir>/optuna.db``). The URL may
    hold a password, so it is never logged or written to metadata."""

    storage_url: str | None = None

    def url(self, storage: StorageResource) -> str:
        from alphatwin_pipelines.optimise.study import default_storage_url

        return self.storage_url or default_storage_url(storage.path())


class MlflowResource(dg.ConfigurableResource):
    """The MLflow tracking store and model registry (``ALPHATWIN_MLFLOW_URI``: a database URL such as
    ``postgresql://user:pass@host/mlflow`` or the compose server ``http://mlflow:5000``; default
    ``sqlite:///<data_dir>/mlflow.db`` with artifacts under ``<data_dir>/mlruns``). The URI may hold a
    password: only its redacted form reaches logs and metadata."""

    tracking_uri: str | None = None

    def uri(self, storage: StorageResource) -> str:
        from alphatwin_pipelines.alpha.registry import default_tracking_uri

        return self.tracking_uri or default_tracking_uri(storage.path())


DBT_PROJECT_DIR = REPO_ROOT / "dbt"


def dbt_resource():
    """The dbt CLI for the marts project in ``dbt/`` (profile beside it, ``ALPHATWIN_DBT_PROFILES_DIR``
    to override). The executable is the venv's own, so runs work without an activated venv."""
    import sys

    from dagster_dbt import DbtCliResource  # pulls in dbt's adapter layer: only when resources are built

    venv_dbt = Path(sys.executable).with_name("dbt")
    return DbtCliResource(
        project_dir=str(DBT_PROJECT_DIR),
        profiles_dir=env_or("ALPHATWIN_DBT_PROFILES_DIR", str(DBT_PROJECT_DIR)),
        dbt_executable=str(venv_dbt) if venv_dbt.exists() else "dbt",
    )


def default_resources() -> dict:
    return {
        "storage": StorageResource(data_dir=env_or(DATA_DIR_ENV, None)),
        "market_data": MarketDataResource(
            source=env_or("ALPHATWIN_SOURCE", "synthetic"),
            source_path=env_or("ALPHATWIN_SOURCE_PATH", None),
            universe=env_or("ALPHATWIN_UNIVERSE", None),
            synthetic_symbols=env_int_or("ALPHATWIN_SYNTHETIC_SYMBOLS", 1000),
            synthetic_defects=env_or("ALPHATWIN_SYNTHETIC_DEFECTS", None),
            polygon_api_key=env_or("POLYGON_API_KEY", None),
            polygon_base_url=env_or("POLYGON_BASE_URL", None),
            secondary_source=env_or("ALPHATWIN_SECONDARY_SOURCE", None),
            secondary_source_path=env_or("ALPHATWIN_SECONDARY_SOURCE_PATH", None),
        ),
        "dask": DaskResource(scheduler_address=env_or("ALPHATWIN_DASK_SCHEDULER", None)),
        "optuna": OptunaResource(storage_url=env_or("ALPHATWIN_OPTUNA_STORAGE", None)),
        "mlflow": MlflowResource(tracking_uri=env_or("ALPHATWIN_MLFLOW_URI", None)),
        "broker": BrokerResource(
            kind=env_or("ALPHATWIN_BROKER", "paper"),
            ledger_url=env_or("ALPHATWIN_LEDGER_URL", None),
            alpaca_api_key=env_or("ALPACA_API_KEY", None),
            alpaca_secret_key=env_or("ALPACA_SECRET_KEY", None),
            alpaca_base_url=env_or("ALPACA_BASE_URL", None),
        ),
        "drop_folder": DropFolderResource(path=env_or("ALPHATWIN_DROP_DIR", None)),
        "failure_webhook": FailureWebhookResource(url=env_or("ALPHATWIN_FAILURE_WEBHOOK", None)),
        "dbt": dbt_resource(),
    }
