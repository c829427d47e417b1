"""Shared fixtures. Real market data lives beside the repo in ../shared/data and is never copied."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI explores the same examples on every run (a failure there reproduces exactly); local runs keep
# drawing new ones, which is how property tests find new counterexamples.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

REPO_ROOT = Path(__file__).resolve().parents[1]
# ALPHATWIN_SHARED_DATA points a checkout that does not sit beside ../shared (a git worktree) at it.
SHARED_DATA = Path(os.environ.get("ALPHATWIN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
SP500_PARQUET = SHARED_DATA / "sp500_daily_1999_2021.parquet"
POLYGON_RESPONSES = SHARED_DATA / "polygon_responses"
# Every Dagster process the tests start loads the instance's storage class, assets/instance.py, from
# the repository root, as the Makefile arranges for `make run` and `make ui`.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))


def pytest_configure(config):
    # The test session is a process start: its backtests reuse compiled kernels like a run's do.
    from alphatwin_pipelines.numba_cache import configure_numba_cache

    configure_numba_cache()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SP500_PARQUET.exists():
        pytest.skip(f"real market data not found at {SHARED_DATA} (../shared/data is absent)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sp500_bars(shared_data):
    """The real S&P 500 daily set, columns renamed to the canonical schema (read-only use)."""
    import pandas as pd

    frame = pd.read_parquet(shared_data / "sp500_daily_1999_2021.parquet")
    frame = frame.rename(columns={"dividend_amount": "dividend", "split_coefficient": "split_ratio"})
    frame["source"] = "sp500"
    return frame


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """A fresh data directory, also exported as ALPHATWIN_DATA_DIR."""
    path = tmp_path / "data"
    path.mkdir()
    monkeypatch.setenv("ALPHATWIN_DATA_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def research_data(tmp_path_factory) -> Path:
    """40 synthetic symbols × 2023–2024 through ingestion, quality, cleaning, features and the scanner.

    Built once per test process; treat it as read-only and copy it (``research_dir``) to write.
    """
    from tests.fixtures.research import build_research_data

    path = tmp_path_factory.mktemp("research") / "data"
    build_research_data(path)
    return path


@pytest.fixture
def research_dir(research_data, tmp_path, monkeypatch) -> Path:
    """A private, writable copy of ``research_data``, also exported as ALPHATWIN_DATA_DIR."""
    import shutil

    path = tmp_path / "data"
    shutil.copytree(research_data, path)
    monkeypatch.setenv("ALPHATWIN_DATA_DIR", str(path))
    return path


def _ephemeral_instance():
    import dagster as dg

    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


@pytest.fixture
def instance():
    """A fresh in-memory Dagster instance per test, so its event log holds only that test's runs."""
    yield from _ephemeral_instance()


@pytest.fixture(scope="module")
def module_instance():
    """One in-memory Dagster instance per test module, for module fixtures that build a pipeline once."""
    yield from _ephemeral_instance()
