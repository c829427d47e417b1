"""Batched Optuna studies: ask B trials, evaluate the B parameter sets in one call, tell B results.

The evaluator interface is ``evaluate(list_of_param_dicts) -> list[float]`` (one objective value
per dict, in order) plus ``suggest(trial) -> dict`` (the parameters an Optuna trial draws).
:class:`LoopEvaluator` gives any single-trial objective ``params -> float`` that interface, so a
family the vectorised engine cannot batch yet still runs through the same study loop.

Sampler: ``TPESampler(seed=trial_seed(seed, b0), constant_liar=True)`` for the batch that starts
at the ``b0``-th finished trial. While a batch is asked, its earlier trials are RUNNING and TPE
treats them as the worst value seen (the constant liar), so the B draws spread out instead of
piling onto one optimum; every batch's draws are a function of the seed, the batch size and the
trials before the batch only.

Overlap: an evaluator with a ``stream_chunk`` > 0 (the fused kernel's, whose compiled calls
release the GIL) is handed each ``stream_chunk`` trials as soon as they are asked, on one worker
thread, while the sampler asks the rest of the batch; the asks never depend on the batch's
values, so the trials and values are those of the sequential loop, and TPE's Python and the
compiled evaluation share the two cores.

Resume: batches start at multiples of B. Each batch's trials are written to the storage as soon
as it is told, in one transaction (:func:`~.study.store_trials`). A run resumed after a kill (or
with more trials) starts from the batch the stored trials end in: it rebuilds the sampler from
the trials before that batch, asks the same B draws (checked against any stored ones), reuses the
stored values and evaluates only the missing trials. So a killed run resumes to the very trials
an uninterrupted one draws.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack

import numpy as np

from alphatwin_pipelines.optimise.study import (
    StudyResult,
    _fail_abandoned,
    open_storage,
    store_trials,
    study_result,
    trial_seed,
)

#: Default number of trials asked and evaluated together (see benchmarks/README.md for the figures).
DEFAULT_BATCH_SIZE = 32
BATCH_SEED_RULE = ("TPESampler(seed=uint32 little-endian of sha256('<seed>:<b0>')[:4], constant_liar=True) for the "
                   "batch of batch_size trials that starts at the b0-th finished trial")


class LoopEvaluator:
    """The per-trial fallback: ``evaluate`` loops a single-trial objective ``params -> float``."""

    def __init__(self, objective, suggest):
        self.objective, self._suggest = objective, suggest

    def suggest(self, trial) -> dict:
        return self._suggest(trial)

    def evaluate(self, params_list: list[dict]) -> list[float]:
        return [float(self.objective(dict(p))) for p in params_list]


def _finished(study):
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    return sorted(trials, key=lambda t: t.number)


def _ask_and_evaluate(study, evaluator, name: str, size: int, reuse: list, pool, chunk: int):
    """Ask ``size`` trials and evaluate those not in ``reuse`` (streamed to ``pool`` by ``chunk`` when
    there is a pool); returns ``(asked, values)``. On any error every asked trial is told FAIL."""
    from optuna.trial import TrialState

    asked, todo, futures = [], [], []
    try:
        for i in range(size):
            asked.append(study.ask())
            params = evaluator.suggest(asked[-1])
            if i < len(reuse):
                old = reuse[i]
                if json.dumps(old.params, sort_keys=True) != json.dumps(params, sort_keys=True):
                    raise RuntimeError(f"study {name}: trial {old.number} was stored with parameters {old.params}, "
                                       f"but the seeded batch draws {params}; the study was run with another seed or "
                                       "batch size (start a new study name)")
                continue
            todo.append(params)
            if pool is not None and len(todo) % chunk == 0:
                futures.append(pool.submit(evaluator.evaluate, todo[-chunk:]))
        if pool is None:
            values = evaluator.evaluate(todo) if todo else []
        else:
            if len(todo) % chunk:
                futures.append(pool.submit(evaluator.evaluate, todo[len(todo) - len(todo) % chunk:]))
            values = [v for future in futures for v in future.result()]
    except BaseException:
        wait(futures)  # no evaluation may outlive its batch
        for trial in asked:
            study.tell(trial, state=TrialState.FAIL)
        raise
    if len(values) != len(todo):
        raise RuntimeError(f"the evaluator returned {len(values)} values for {len(todo)} parameter sets")
    return asked, todo, values


def run_batched_study(evaluator, name: str, storage_url: str | None, n_trials: int, seed: int, *,
                      batch_size: int = DEFAULT_BATCH_SIZE, n_startup_trials: int = 10, progress=None,
                      user_attrs: dict | None = None) -> StudyResult:
    """Run (or resume) the study ``name`` until it holds ``n_trials`` finished trials, B at a time.

    ``storage_url`` None keeps the study in memory only. ``progress(study, trial)`` is called
    after every told trial (e.g. :class:`~.progress.ProgressLogger`). A non-finite value from
    the evaluator is an error (the objective maps "no trade" to a finite score itself).
    """
    import optuna
    from optuna.trial import TrialState

    from alphatwin_pipelines.optimise.tpe_speed import install

    install()  # the same draws, about half the sampler's CPU (tpe_speed)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batch_size = int(batch_size)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stored = None
    history = []
    if storage_url is not None:
        storage = open_storage(storage_url)
        stored = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
        for key, value in (user_attrs or {}).items():
            stored.set_user_attr(key, value)
        _fail_abandoned(stored, storage)
        history = _finished(stored)
    study = optuna.create_study(direction="maximize")  # the in-memory working copy
    done = len(history)
    t0, ran = time.perf_counter(), 0
    b0 = min(done, n_trials) - min(done, n_trials) % batch_size  # the batch a killed run left unfinished
    study.add_trials(history[:b0])
    chunk = int(getattr(evaluator, "stream_chunk", 0) or 0)
    with ExitStack() as stack:
        pool = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="alphatwin-evaluate")) if chunk else None
        while b0 < n_trials:
            size = min(batch_size, n_trials - b0)
            study.sampler = optuna.samplers.TPESampler(seed=trial_seed(seed, b0), n_startup_trials=n_startup_trials,
                                                       constant_liar=True)
            reuse = history[b0:b0 + size]
            asked, todo, values = _ask_and_evaluate(study, evaluator, name, size, reuse, pool, chunk)
            told = []
            for i, trial in enumerate(asked):
                if i < len(reuse):
                    old = reuse[i]
                    frozen = study.tell(trial, old.value if old.state == TrialState.COMPLETE else None,
                                        state=old.state)
                else:
                    value = float(values[i - len(reuse)])
                    if not np.isfinite(value):
                        raise ValueError(f"study {name}: the objective of {todo[i - len(reuse)]} is {value}, "
                                         "not finite")
                    frozen = study.tell(trial, value)
                    told.append(frozen)
                    ran += 1
                if progress is not None:
                    progress(study, frozen)
            if stored is not None:
                store_trials(stored, told)  # the batch, persisted as soon as it is told, in one transaction
            b0 += size
    return study_result(study, name, ran, time.perf_counter() - t0)
