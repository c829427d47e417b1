"""Persistent, resumable, reproducible Optuna studies.

* Storage: an RDB URL (``sqlite:///<data_dir>/optuna.db`` by default, PostgreSQL by
  configuration: ``ALPHATWIN_OPTUNA_STORAGE``, read by ``assets.resources.OptunaResource``). The URL may hold a password: it is never logged or written to a table.
* Names: ``alphatwin/<family>/L<level>/<key>`` where ``key`` hashes the inputs (symbols, window,
  data, costs, seed), so optuna-dashboard lists studies readably and a change of inputs starts a
  new study instead of mixing trials of different objectives.
* Resume: ``load_if_exists=True``; a run tops the study up to ``n_trials`` finished (complete or
  pruned) trials and never redoes one. A killed run loses only the trial it was running (see
  Speed); trials another client left RUNNING in the storage are marked FAIL.
* Speed: trials run against an in-memory copy of the stored study and each finished trial is
  written to the storage at once (``add_trial``). Sampling straight from the RDB re-reads the
  trials on every ``suggest_*`` call, a large share of a short trial on SQLite.
* Reproducibility: the sampler of the i-th finished trial is ``TPESampler(seed=f(seed, i))``,
  a function of the seed and of the trials before it only, so an interrupted study resumed to
  ``n`` trials draws exactly what an uninterrupted one does; the pruner (median of earlier
  trials at the same step) is deterministic too.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from alphatwin_pipelines.data_dir import state_dir

FINISHED = ("COMPLETE", "PRUNED")
TRIAL_SEED_RULE = "TPESampler(seed=uint32 little-endian of sha256('<seed>:<i>')[:4]) for the i-th finished trial"


def default_storage_url(data_dir) -> str:
    return f"sqlite:///{state_dir(data_dir) / 'optuna.db'}"


def study_name(family: str, level: int, key: str) -> str:
    return f"alphatwin/{family}/L{int(level)}/{key[:12]}"


def trial_seed(seed: int, index: int) -> int:
    """The sampler seed of the ``index``-th finished trial (a stable 32-bit hash)."""
    digest = hashlib.sha256(f"{int(seed)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def make_pruner(n_startup_trials: int = 5):
    """Median pruning from the first reported step, once ``n_startup_trials`` trials completed."""
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=0)


@dataclass
class StudyResult:
    name: str
    best_params: dict
    best_value: float
    best_trial: int
    n_trials: int  # finished trials (complete + pruned) in the study
    n_complete: int
    n_pruned: int
    ran: int  # trials executed by this call (0 when the study was already complete)
    seconds: float
    trials: pd.DataFrame  # trial_number, state, params_json, sharpe


def _trials_frame(study) -> pd.DataFrame:
    rows = [{"trial_number": t.number, "state": t.state.name,
             "params_json": json.dumps(t.params, sort_keys=True, separators=(",", ":")),
             "sharpe": float(t.value) if t.state.name == "COMPLETE" else np.nan}
            for t in study.get_trials(deepcopy=False)]
    frame = pd.DataFrame(rows, columns=["trial_number", "state", "params_json", "sharpe"])
    return frame.sort_values("trial_number", kind="stable").reset_index(drop=True)


@functools.lru_cache(maxsize=8)
def open_storage(url: str):
    """An ``RDBStorage``; SQLite files run in WAL mode with ``synchronous=NORMAL``.

    An Optuna trial commits a dozen small transactions; with SQLite's default full sync each
    costs an fsync, a large share of a short trial. WAL + NORMAL keeps the database consistent
    after a crash (a power cut may lose the last trials, which a resumed study simply runs
    again). Cached per URL: connecting and checking the schema is paid once per process
    instead of once per study.
    """
    import optuna
    from sqlalchemy import event

    storage = optuna.storages.RDBStorage(url)
    if storage.engine.dialect.name == "sqlite":
        def _pragmas(connection, _record):
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        event.listen(storage.engine, "connect", _pragmas)
        storage.engine.dispose()  # pooled connections predate the listener
    return storage


def _fail_abandoned(study, storage) -> None:
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)


def store_trials(stored, trials) -> None:
    """Append the finished ``trials`` (frozen, from the in-memory working copy) to the RDB-backed
    study ``stored`` in one transaction: the rows ``Study.add_trial`` writes, in order.

    ``add_trial`` re-reads the trial and every parameter's first distribution in the study per
    parameter (three ORM round trips a parameter): ~15 ms of CPU per 17-parameter trial, more than
    TPE and the evaluation together. Here the trial rows are added and flushed once (numbers
    continue the study's count under its row lock, as Optuna numbers them), then the parameters,
    values and attributes go in as one bulk insert each, through Optuna's own models. The
    distributions were checked against the study's by the working copy, which holds every stored
    trial. Anything this does not cover (another storage, intermediate values, several
    objectives) goes through ``add_trial``.
    """
    from optuna.distributions import distribution_to_json
    from optuna.storages import RDBStorage
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from sqlalchemy import func, insert

    backend = getattr(stored._storage, "_backend", stored._storage)
    if not isinstance(backend, RDBStorage) or any(t.intermediate_values or len(t.values or ()) > 1 for t in trials):
        for trial in trials:
            stored.add_trial(trial)
        return
    for trial in trials:
        trial._validate()
    with _create_scoped_session(backend.scoped_session) as session:
        models.StudyModel.find_or_raise_by_id(stored._study_id, session, for_update=True)
        base = session.query(func.count(models.TrialModel.trial_id)).filter(
            models.TrialModel.study_id == stored._study_id).scalar()
        rows = [models.TrialModel(study_id=stored._study_id, number=base + i, state=t.state,
                                  datetime_start=t.datetime_start, datetime_complete=t.datetime_complete)
                for i, t in enumerate(trials)]
        session.add_all(rows)
        session.flush()  # the trial ids
        params, values, user, system = [], [], [], []
        for row, t in zip(rows, trials):
            params += [{"trial_id": row.trial_id, "param_name": k, "param_value": t.distributions[k].to_internal_repr(v),
                        "distribution_json": distribution_to_json(t.distributions[k])} for k, v in t.params.items()]
            if t.value is not None:
                value, kind = models.TrialValueModel.value_to_stored_repr(t.value)
                values.append({"trial_id": row.trial_id, "objective": 0, "value": value, "value_type": kind})
            user += [{"trial_id": row.trial_id, "key": k, "value_json": json.dumps(v)} for k, v in t.user_attrs.items()]
            system += [{"trial_id": row.trial_id, "key": k, "value_json": json.dumps(v)}
                       for k, v in t.system_attrs.items()]
        for model, batch in ((models.TrialParamModel, params), (models.TrialValueModel, values),
                             (models.TrialUserAttributeModel, user), (models.TrialSystemAttributeModel, system)):
            if batch:
                session.execute(insert(model), batch)


def run_study(objective, name: str, storage_url: str, n_trials: int, seed: int, *, n_startup_trials: int = 10,
              pruner_startup: int = 5, progress=None, user_attrs: dict | None = None) -> StudyResult:
    """Run (or resume) the study ``name`` until it holds ``n_trials`` finished trials.

    ``objective(trial)`` returns the value to maximise and may raise ``optuna.TrialPruned``;
    any other exception marks the trial FAIL and propagates. ``progress(study, trial)`` is
    called after every trial (e.g. :class:`~.progress.ProgressLogger`).
    """
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url)
    stored = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
    for key, value in (user_attrs or {}).items():
        stored.set_user_attr(key, value)
    _fail_abandoned(stored, storage)
    study = optuna.create_study(direction="maximize", pruner=make_pruner(pruner_startup))  # the in-memory working copy
    study.add_trials(stored.get_trials(deepcopy=False))
    t0, ran = time.perf_counter(), 0
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    while done < n_trials:
        study.sampler = optuna.samplers.TPESampler(seed=trial_seed(seed, done), n_startup_trials=n_startup_trials)
        trial = study.ask()
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            frozen = study.tell(trial, state=TrialState.PRUNED)
        except BaseException:
            stored.add_trial(study.tell(trial, state=TrialState.FAIL))
            raise
        else:
            frozen = study.tell(trial, value)
        stored.add_trial(frozen)  # persisted as soon as it finishes: a crash loses the running trial only
        ran, done = ran + 1, done + 1
        if progress is not None:
            progress(study, frozen)
    return study_result(study, name, ran, time.perf_counter() - t0)


def study_result(study, name: str, ran: int, seconds: float) -> StudyResult:
    """The finished trials of ``study`` and its best one (ties: the earliest trial)."""
    trials = _trials_frame(study)
    complete = trials[trials["state"] == "COMPLETE"]
    if complete.empty:
        raise RuntimeError(f"study {name} has no complete trial: raise n_trials or lower the pruner's startup trials")
    best = complete.loc[complete["sharpe"].idxmax()]  # ties: the earliest trial (idxmax takes the first)
    return StudyResult(
        name=name, best_params=json.loads(best["params_json"]), best_value=float(best["sharpe"]),
        best_trial=int(best["trial_number"]), n_trials=int(trials["state"].isin(FINISHED).sum()),
        n_complete=len(complete), n_pruned=int((trials["state"] == "PRUNED").sum()), ran=ran,
        seconds=seconds, trials=trials)
