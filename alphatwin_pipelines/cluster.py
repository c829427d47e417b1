"""One place that maps work in this process or on a Dask ``distributed`` cluster.

``run_tasks(fn, items, client)`` runs ``fn`` over ``items`` one after another here when
``client`` is ``None`` (the default everywhere), and as one Dask task per item when a client
is given (``ALPHATWIN_DASK_SCHEDULER`` in the Dagster layer). Results come back in the order
of ``items`` either way, so a stage that is deterministic in process is deterministic on the
cluster. Dask reschedules the tasks of a worker that dies on the workers that remain (up to
``distributed.scheduler.allowed-failures`` times), so every ``fn`` given here must be safe to
run again: a pure function, or work that resumes from what it already stored (the Optuna
studies).

Each task ends by handing its process's free heap pages back to the system (:func:`trim_heap`):
a worker runs dozens of multi-GB tasks one after another, and glibc keeps what one task freed
mapped, so without it a worker's RSS climbs to its worst task's peak plus everything freed since.

``distributed`` is imported only when a client is used.
"""

from __future__ import annotations

import ctypes
import functools
import uuid
from collections.abc import Callable, Iterable
from typing import Any

_UNSET = object()


@functools.cache
def _libc():
    lib = ctypes.CDLL(None)  # the C library this process already runs on
    return lib if hasattr(lib, "malloc_trim") else None


def trim_heap() -> None:
    """Return the free pages of every malloc arena to the system (glibc ``malloc_trim(0)``; a no-op
    where the C library has no such call). What is still allocated is untouched."""
    lib = _libc()
    if lib is not None:
        lib.malloc_trim(0)


def _then_trim(fn: Callable, *args):
    try:
        return fn(*args)
    finally:
        trim_heap()


def n_workers(client) -> int:
    """Workers the scheduler knows now (at least 1)."""
    return max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})))


def run_tasks(fn: Callable, items: Iterable, client=None, *, shared: Any = _UNSET, name: str | None = None,
              on_result: Callable[[int, Any], None] | None = None, direct: bool | None = None,
              after: Callable[[], None] | None = None) -> list:
    """``fn(item)``, or ``fn(shared, item)`` when ``shared`` is given, for every item, in order.

    ``shared`` (e.g. the market every study trades) is sent to each worker once rather than
    with every task. ``after()`` (e.g. :func:`~alphatwin_pipelines.strategies.families.release_caches`)
    is called once the tasks are all done in every process that ran them: here, or on every worker
    (``client.run``, which reaches a worker whatever copies of ``shared`` it still holds).
    ``on_result(index, result)`` is called here as each result arrives (in completion order on a
    cluster), for progress lines. ``name`` prefixes the task keys, which
    is what the Dask dashboard groups by. On the cluster the first failing task's exception is
    raised here and the other tasks are cancelled.
    """
    return _run(fn, items, client, shared, name, on_result, direct, None, after)[0]


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
    return _run(fn, items, client, shared, name, on_result, None, summary, None)


def _run(fn, items, client, shared, name, on_result, direct, summary, after) -> tuple[list, list]:
    items = list(items)
    if client is None:
        results, summaries = [], []
        for index, item in enumerate(items):
            results.append(_then_trim(fn, item) if shared is _UNSET else _then_trim(fn, shared, item))
            summaries.append(results[-1] if summary is None else summary(results[-1]))
            if on_result is not None:
                on_result(index, summaries[-1])
        if after is not None:
            _then_trim(after)
        return summaries, results
    from distributed import as_completed

    if not items:
        return [], []
    token = uuid.uuid4().hex[:8]
    prefix = name or getattr(fn, "__name__", "task")
    args = [items]

    def scatter_shared() -> None:
        # hash=False: a random key rather than a hash of the whole object
        args[0] = [client.scatter(shared, broadcast=True, hash=False, direct=direct)] * len(items)

    if shared is not _UNSET:
        args.insert(0, None)
        scatter_shared()

    def submit(index: int, suffix: str = ""):
        key = f"{prefix}-{token}-{index}{suffix}"
        made = client.submit(functools.partial(_then_trim, fn), *[a[index] for a in args], key=key, pure=False)
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
                # Its shared object may be what was lost ("lost dependencies": Dask's memory manager
                # keeps one replica of broadcast data, and the killed worker may have held it), so
                # the first resubmission scatters it again for every task still to run.
                if shared is not _UNSET and not resubmitted:
                    scatter_shared()
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
    if after is not None:
        _after_everywhere(client, after)
    return summaries, made


def _after_everywhere(client, after: Callable[[], None]) -> None:
    """``after()`` then a trim on every worker. Best effort: the tasks' results are already here,
    so a worker lost meanwhile is skipped, not an error."""
    client.run(_then_trim, after, on_error="ignore")
