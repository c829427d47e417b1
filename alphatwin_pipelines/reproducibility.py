"""What it takes to reproduce a research result: code, data, parameters, seeds and libraries.

A *record* (:func:`make_record`) is a JSON-serialisable dict stored with every optimised
strategy. :func:`replay_metrics` re-runs the record's backtest from the data directory with the
same function the optimisation stage used for its in-sample metrics, so an unchanged checkout
and unchanged input files give the same numbers bit for bit; :func:`input_hashes` says which
input file changed when they do not.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import pandas as pd

from alphatwin_pipelines.objectstore import is_remote, read_many
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import read_adjusted

REPO_ROOT = Path(__file__).resolve().parents[1]
RECORD_VERSION = 1
_LIBRARIES = {"numpy": "numpy", "pandas": "pandas", "vectorbt": "vectorbt", "optuna": "optuna",
              "talib": "TA-Lib", "pyarrow": "pyarrow"}


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30,
                          check=True).stdout.strip()


def code_version() -> str:
    """The repository's commit, ``+dirty`` when tracked files differ from it; ``unknown`` outside git."""
    try:
        commit = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def _read(paths: list) -> list[bytes]:
    """The files' bytes: objects fetched concurrently, local files one by one."""
    return read_many(paths) if paths and is_remote(paths[0]) else [Path(p).read_bytes() for p in paths]


def content_hash(paths) -> str:
    """sha256 over the files' bytes, each prefixed by its name and size, in sorted name order
    (local files or objects of the data directory's store, read through it)."""
    digest = hashlib.sha256()
    paths = sorted((p if is_remote(p) else Path(p) for p in paths),
                   key=lambda p: tuple(p.path.split("/")) if is_remote(p) else p.parts)
    for path, data in zip(paths, _read(paths)):
        digest.update(f"{path.name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def input_hashes(store: TableStore, table: str, sessions) -> dict[str, str]:
    """``{"<table>/<YYYY-MM-DD>": sha256 of that partition file}`` for the stored ``sessions``."""
    wanted = pd.DatetimeIndex(sessions)
    stored = wanted[wanted.isin(store.stored_sessions(table))]
    data = _read([store.partition_path(table, session) for session in stored])
    return {f"{table}/{session:%Y-%m-%d}": hashlib.sha256(payload).hexdigest() for session, payload in zip(stored, data)}


def library_versions() -> dict[str, str]:
    out = {}
    for name, dist in _LIBRARIES.items():
        try:
            out[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["python"] = platform.python_version()
    return out


def make_record(spec, symbols, start, end, seeds, inputs, costs, **extra) -> dict:
    """The reproducibility record of one result (see the module docstring).

    ``spec`` is a ``StrategySpec``; ``inputs`` maps input files to hashes (:func:`input_hashes`);
    ``costs`` is a ``CostModel`` (or its fields as a dict); ``extra`` adds JSON-serialisable
    fields, e.g. ``warmup_start`` and ``as_of`` that :func:`replay_metrics` reads.
    """
    from dataclasses import asdict, is_dataclass

    record = {
        "record_version": RECORD_VERSION,
        "code_version": code_version(),
        "libraries": library_versions(),
        "spec": json.loads(spec.to_json()),
        "spec_hash": spec.spec_hash(),
        "symbols": sorted(str(s) for s in symbols),
        "start": f"{pd.Timestamp(start):%Y-%m-%d}",
        "end": f"{pd.Timestamp(end):%Y-%m-%d}",
        "seeds": dict(seeds),
        "inputs": dict(sorted(inputs.items())),
        "costs": asdict(costs) if is_dataclass(costs) else dict(costs),
        **extra,
    }
    json.dumps(record, allow_nan=False)  # fail here, not in a reader, if something is not serialisable
    return record


def read_window_bars(store: TableStore, symbols, start, end, as_of) -> pd.DataFrame:
    """Adjusted cleaned bars of ``symbols`` in [start, end], adjusted as of ``as_of``."""
    return read_adjusted(store, start=start, end=end, symbols=sorted(str(s) for s in symbols), as_of=as_of)


def replay_metrics(record: dict | str, data_dir) -> dict:
    """Re-run the record's backtest from ``data_dir``: the stage's in-sample metrics dict.

    Reads the adjusted bars of the record's symbols from ``warmup_start`` (default ``start``)
    to ``end``, adjusted as of ``as_of`` (default ``end``), and calls
    ``optimise.objective.portfolio_metrics`` with the record's spec, window start and costs.
    """
    from alphatwin_pipelines.backtest import CostModel
    from alphatwin_pipelines.optimise.objective import portfolio_metrics
    from alphatwin_pipelines.strategies import MarketArrays, StrategySpec

    if isinstance(record, str):
        record = json.loads(record)
    spec = StrategySpec.from_json(json.dumps(record["spec"]))
    bars = read_window_bars(TableStore(data_dir), record["symbols"], record.get("warmup_start", record["start"]),
                            record["end"], record.get("as_of", record["end"]))
    missing = sorted(set(record["symbols"]) - set(bars["symbol"].astype(str)))
    if missing:
        raise ValueError(f"cannot replay {record['spec_hash'][:16]}: no cleaned bars under {data_dir} for "
                         f"{missing} between {record['start']} and {record['end']}; restore that data first")
    market = MarketArrays.from_bars(bars, price="adj")
    if spec.family == "ml_rank":  # it ranks the stored alpha_predictions of the same sessions
        from alphatwin_pipelines.alpha.scores import attach_scores

        market = attach_scores(TableStore(data_dir), market)
    return portfolio_metrics(spec, market, record["start"], CostModel(**record["costs"]))
