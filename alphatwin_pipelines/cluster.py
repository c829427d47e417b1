"""One place that maps work in this process or on a Dask ``distributed`` cluster.

``run_tasks(fn, items, client)`` runs ``fn`` over ``items`` one after another here when
``client`` is ``None`` (the default everywhere), and as one Dask task per item when a client
is given (``ALPHATWIN_DASK_SCHEDULER`` in the Dagster layer). Results come back in the order
of ``items`` either way, so a stage that is deterministic in process is deterministic on the
cluster. Dask reschedules the tasks of a worker that dies on the workers that remain (up to
``distributed.scheduler.allowed-failures`` times), so every ``fn`` given here must be safe to
run again: a pure function, or work that resumes from what it already stored (the Optuna
studies).

``distributed`` is imported only when a client is used.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

_UNSET = object()


def n_workers(client) -> int:
    """Workers the scheduler knows now (at least 1)."""
    return max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})))


def run_tasks(fn: Callable, items: Iterable, client=None, *, shared: Any = _UNSET, name: str | None = None,
              on_result: Callable[[int, Any], None] | None = None, direct: bool | None = None) -> list:
    """``fn(item)``, or ``fn(shared, item)`` when ``shared`` is given, for every item, in order.

    ``shared`` (e.g. the market every study trades) is sent to each worker once rather than
    with every task; if it has a ``release()`` method (e.g. emptying caches the tasks filled), it is
    called on every copy when the tasks are done. ``on_result(index, result)`` is called here as each result arrives (in
    completion order on a cluster), for progress lines. ``name`` prefixes the task keys, which
    is what the Dask dashboard groups by. On the cluster the first failing task's exception is
    raised here and the other tasks are cancelled.
    """
    return _run(fn, items, client, shared, name, on_result, direct, None)[0]


def run_tasks_held(fn: Callable, items: Iterable, client=None, *, summary: Callable, shared: Any = _UNSET,
                   name: str | None = None, on_result: Callable[[int, Any], None] | None = None) -> tuple[list, list]:
    """:func:`run_tasks`, but on a cluster each result stays on the worker that made it.

    Returns ``(summaries, handles)``: ``summaries[i] = summary(result_i)``, computed where the
    result is and the only part sent here (``on_result`` sees it); ``handles[i]`` is the result's
    future on a cluster, the result itself in process. Put handles inside the items of a later
    :func:`run_tasks` (a tuple is fine): Dask hands the task the result, moving it between workers
    only when it must. Large intermediate results (a walk-forward's frames) then never travel
    through this process or sit in its memory; they are released when the handles are dropped.
    """
    return _run(fn, items, client, shared, name, on_result, None, summary)


def _run(fn, items, client, shared, name, on_result, direct, summary) -> tuple[list, list]:
    items = list(items)
    if client is None:
        results, summaries = [], []
        for index, item in enumerate(items):
            results.append(fn(item) if shared is _UNSET else fn(shared, item))
            summaries.append(results[-1] if summary is None else summary(results[-1]))
            if on_result is not None:
                on_result(index, summaries[-1])
        if shared is not _UNSET and hasattr(shared, "release"):
            shared.release()
        return summaries, results
    from distributed import as_completed

    if not items:
        return [], []
    token = uuid.uuid4().hex[:8]
    prefix = name or getattr(fn, "__name__", "task")
    args = [items]
    if shared is not _UNSET:
        # hash=False: a random key rather than a hash of the whole object
        args.insert(0, [client.scatter(shared, broadcast=True, hash=False, direct=direct)] * len(items))

    def submit(index: int, suffix: str = ""):
        key = f"{prefix}-{token}-{index}{suffix}"
        made = client.submit(fn, *[a[index] for a in args], key=key, pure=False)
        return made, (made if summary is None else client.submit(summary, made, key=f"{key}-summary", pure=False))

    made, watched = zip(*(submit(index) for index in range(len(items))))
    made, watched = list(made), list(watched)
    position = {future.key: index for index, future in enumerate(watched)}
    summaries: list = [None] * len(items)
    resubmitted: set[int] = set()
    try:
        pending = as_completed(watched)
        for future in pending:
            index = position[future.key]
            if future.cancelled() and index not in resubmitted:
                # The scheduler can forget a task while a killed worker's tasks are moved ("already
                # forgotten"); the task is safe to run again (see the module docstring): once more.
                resubmitted.add(index)
                made[index], again = submit(index, "-again")
                position[again.key] = index
                watched.append(again)
                pending.add(again)
                continue
            summaries[index] = future.result()
            if on_result is not None:
                on_result(index, summaries[index])
    except BaseException:
        client.cancel(made + watched)
        raise
    if shared is not _UNSET and hasattr(shared, "release"):
        _release_everywhere(client, args[0][0])
    return summaries, made


def _release(shared) -> None:
    shared.release()


def _release_everywhere(client, scattered) -> None:
    """Call ``release()`` on every worker's copy of a broadcast ``shared`` object (e.g. its caches):
    a worker may keep the copy alive after the tasks that used it are done. Best effort: the tasks'
    results are already here, so a worker lost meanwhile is skipped, not an error."""
    workers = list(client.scheduler_info(n_workers=-1).get("workers", {}))
    done = [client.submit(_release, scattered, workers=[w], allow_other_workers=False, pure=False) for w in workers]
    client.gather(done, errors="skip")
