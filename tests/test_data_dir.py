"""One default for ``ALPHATWIN_DATA_DIR``, resolved in one place, whatever the working directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from alphatwin_pipelines.execution import default_ledger_url
from alphatwin_pipelines.optimise.study import default_storage_url
from alphatwin_pipelines.storage import DATA_DIR_ENV, TableStore, resolve_data_dir
from assets.resources import DropFolderResource, OptunaResource, StorageResource, default_resources

REPO_DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """Run from an unrelated working directory with the variable unset."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_unset_every_reader_uses_the_repository_data_folder(elsewhere):
    assert resolve_data_dir() == REPO_DATA
    assert TableStore().data_dir == REPO_DATA
    storage = default_resources()["storage"]
    assert storage.path() == REPO_DATA and storage.store().data_dir == REPO_DATA
    assert DropFolderResource().folder(storage) == REPO_DATA / "drop"
    assert OptunaResource().url(storage) == f"sqlite:///{REPO_DATA / 'optuna.db'}"
    assert default_ledger_url(None) == f"sqlite:///{REPO_DATA / 'paper_ledger.db'}"


def test_the_variable_moves_every_reader(elsewhere, monkeypatch):
    target = elsewhere / "tables"
    monkeypatch.setenv(DATA_DIR_ENV, str(target))
    assert TableStore().data_dir == target
    assert StorageResource().path() == target
    assert default_storage_url(None) == f"sqlite:///{target / 'optuna.db'}"


def test_a_relative_setting_is_resolved_against_the_working_directory(elsewhere):
    assert StorageResource(data_dir="rel").store().data_dir == elsewhere / "rel"
    assert resolve_data_dir(Path("rel")) == elsewhere / "rel" and os.path.isabs(default_ledger_url("rel")[10:])


def test_a_run_step_sets_the_numba_cache_under_its_data_dir(tmp_path, monkeypatch):
    import dagster as dg

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    seen = {}

    @dg.asset
    def probe(storage: StorageResource) -> None:
        seen["cache"] = os.environ.get("NUMBA_CACHE_DIR")

    assert dg.materialize([probe], resources={"storage": StorageResource(data_dir=str(tmp_path))}).success
    assert seen["cache"] == str(tmp_path.resolve() / ".numba_cache")
