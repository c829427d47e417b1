"""The engine's layering: stages sit on top of the engine, and importing the engine changes nothing.

``alphatwin_pipelines/stages/`` holds each asset's work; the rest of the engine is what the
stages build on, so no module outside ``stages/`` may import a stage (a cycle waiting to
happen, and a stage's heavy imports leaking into every reader).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / "alphatwin_pipelines"
STAGES = "alphatwin_pipelines.stages"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(source: str, package: str) -> set[str]:
    """Every module an ``import`` statement in ``source`` names, relative imports resolved
    against ``package`` (the package the module belongs to)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _stage_imports(source: str, package: str) -> list[str]:
    return sorted(n for n in _imported_modules(source, package) if n == STAGES or n.startswith(STAGES + "."))


def stage_imports_outside_stages() -> dict[str, list[str]]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if (PACKAGE / "stages") in path.parents:
            continue
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        bad = _stage_imports(path.read_text(), package)
        if bad:
            found[str(path.relative_to(REPO_ROOT))] = bad
    return found


def test_the_scan_sees_every_spelling_of_a_stage_import():
    # Otherwise the layering test below could pass on a module that does import a stage.
    for source in ("from alphatwin_pipelines.stages.cleaning import clean_sessions",
                   "import alphatwin_pipelines.stages.quality",
                   "from alphatwin_pipelines import stages",
                   "from ..stages import cleaning",
                   "def f():\n    from alphatwin_pipelines.stages import quality\n"):
        assert _stage_imports(source, "alphatwin_pipelines.reports"), source
    assert _stage_imports("from .. import tables\nfrom ..storage import TableStore", "alphatwin_pipelines.reports") == []
    assert _stage_imports("import alphatwin_pipelines.stagesx", "alphatwin_pipelines") == []


def test_no_engine_module_outside_stages_imports_a_stage():
    assert stage_imports_outside_stages() == {}


def test_importing_the_engine_loads_no_stage_no_ml_library_and_changes_no_environment_variable():
    code = textwrap.dedent("""
        import json, os, sys
        before = dict(os.environ)
        import alphatwin_pipelines
        import alphatwin_pipelines.backtest  # vectorbt's numba cache is set by entry points, not on import
        import alphatwin_pipelines.alpha.catalogue, alphatwin_pipelines.alpha.predict, alphatwin_pipelines.alpha.training
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("lightgbm", "shap", "sklearn", "mlflow"))
        changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
        stages = sorted(m for m in sys.modules if m.startswith("alphatwin_pipelines.stages"))
        print(json.dumps({"changed": changed, "stages": stages, "heavy": heavy}))
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "ALPHATWIN_DATA_DIR")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"changed": [], "stages": [], "heavy": []}
