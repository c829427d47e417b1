"""The code location as Dagster loads it: the CLI validates it, and loading it stays light."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from alphatwin_pipelines.tables import ALPHA_LABELS, ALPHA_PREDICTIONS

REPO_ROOT = Path(__file__).resolve().parents[1]
DAGSTER = Path(sys.executable).with_name("dagster")
# Libraries that only the steps using them should pay for (import time counts on every run step).
HEAVY_MODULES = ("vectorbt", "numba", "great_expectations", "optuna", "pypfopt", "cvxpy", "alpaca", "matplotlib",
                 "lightgbm", "shap", "sklearn", "mlflow")
#: Submodules of libraries the code location needs, that cost ~0.4 s and only stages use.
HEAVY_SUBMODULES = ("pyarrow.dataset",)


@pytest.fixture
def dagster_home(tmp_path) -> Path:
    """A DAGSTER_HOME holding a copy of the repository's instance config, as `make` sets up."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def _validate(dagster_home: Path, *location_args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home)}
    return subprocess.run(
        [str(DAGSTER), "definitions", "validate", *location_args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def _explain(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"


@pytest.mark.slow
def test_definitions_file_validates(dagster_home):
    proc = _validate(dagster_home, "-f", "definitions.py", "-d", ".")
    assert proc.returncode == 0, _explain(proc)
    assert "All code locations passed validation" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_workspace_validates(dagster_home):
    proc = _validate(dagster_home, "-w", "workspace.yaml")
    assert proc.returncode == 0, _explain(proc)
    output = proc.stdout + proc.stderr
    assert "Validation successful for code location alphatwin_pipelines" in output
    assert "All code locations passed validation" in output


@pytest.mark.slow
def test_loading_the_code_location_does_not_import_heavy_libraries():
    code = textwrap.dedent(
        f"""
        import json, sys
        import definitions
        heavy = {HEAVY_MODULES!r}
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy or m in {HEAVY_SUBMODULES!r})
        print(json.dumps({{"loaded": loaded, "assets": len(list(definitions.defs.resolve_all_asset_specs()))}}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, _explain(proc)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["assets"] > 0
    assert report["loaded"] == [], f"importing definitions pulled in {report['loaded']}"


@pytest.mark.filterwarnings("ignore::dagster.BetaWarning")
def test_every_asset_has_a_group_and_a_description():
    import definitions

    specs = list(definitions.defs.resolve_all_asset_specs())
    assert specs, "the code location defines assets"
    keys = {spec.key.to_user_string() for spec in specs}
    assert {"universe", "raw_ohlcv"} <= keys
    # A dependency defined in no module would become a stub asset: every one must be defined.
    stubs = {s.key.to_user_string() for s in specs if s.metadata.get("dagster/auto_created_stub_asset")}
    assert not stubs, f"dependencies defined nowhere: {sorted(stubs)}"
    assert {ALPHA_LABELS, ALPHA_PREDICTIONS} <= keys
    for spec in specs:
        name = spec.key.to_user_string()
        assert spec.group_name and spec.group_name != "default", f"{name} has no group"
        assert spec.description and spec.description.strip(), f"{name} has no description"
