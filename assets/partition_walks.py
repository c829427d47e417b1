"""One walk of the session calendar per process, not one per question Dagster asks about it.

The session partitions (assets/partitions.py) are a cron of two ticks a weekday with a cron exclusion
and one timestamp exclusion per holiday. Dagster answers every question about such a definition
(how many partitions, which keys in a range, is this key valid, the window of a key) by walking the
cron from the definition's start with croniter and merging the exclusions: ~2.4 s of CPU for
2000-2026 on an idle core. A UI backfill asks those questions many times over, in the webserver (the
launch mutation) and in the daemon (the backfill's iterations, run creation), each time on a fresh
definition rebuilt from the code location's snapshot, so Dagster's own per-object caches rarely hit.

``install()`` makes ``TimeWindowPartitionsDefinition._iterate_time_windows`` (the forward walk all of
those go through) read from a per-process list of the definition's windows, extended lazily from
Dagster's own walk and shared by every equal definition (same ``repr``: cron, start, end, timezone,
format, offset and every exclusion). The windows are Dagster's, in Dagster's order, so every answer
is the one Dagster would give; only definitions with exclusions take this path (without them Dagster
has arithmetic shortcuts), and walks starting before the definition's start or ignoring exclusions
still go to Dagster.

A launch also asks, for each asset of the backfill, to merge the range's sessions into the windows of
a subset (``_add_partitions_to_time_windows``: one gap check per pair of sessions, ~0.3 s of CPU per
asset for 2000-2026); the assets share one definition and one range, so the merge of a list of keys
into an empty subset is kept per walk and reused (the merge depends on the definition and the keys
only; a key that fails Dagster's validation raises and nothing is kept).

The backfill daemon also walks each such definition of its workspace once when it starts, in a
background thread (``install_daemon_warmup()``), so the first backfill after a start finds the walk
done instead of paying it before its run is created.
"""

from __future__ import annotations

import bisect
import logging
import threading

# Definitions remembered per process; a code location has a handful (one per ALPHATWIN_START).
MAX_DEFINITIONS = 16
# Windows (sessions) pulled from Dagster's walk at a time: about half a year.
CHUNK = 128

# Merged key lists remembered per walk (a launch asks about one range, for every asset).
MAX_MERGES = 8

# Definition objects remembered per process: the webserver and the daemon rebuild them from snapshots,
# a few per asset (each holds its exclusions: ~200 KB for 2000-2026).
MAX_OBJECTS = 64

_walks: dict[str, _Walk] = {}
_by_object: dict[int, tuple[object, _Walk]] = {}
_lock = threading.Lock()
_original = None
_original_merge = None


class _Walk:
    """The windows of one definition from its start, in order, as far as anyone has asked."""

    def __init__(self, definition) -> None:
        self.source = iter(_original(definition, definition.start_timestamp))
        self.windows: list = []
        self.starts: list[float] = []
        self.merges: dict[tuple, tuple] = {}
        self.lock = threading.Lock()

    def extend(self, needed: int) -> None:
        with self.lock:
            while len(self.windows) < needed:
                for _ in range(CHUNK):
                    window = next(self.source)
                    self.windows.append(window)
                    self.starts.append(window.start.timestamp())


def _walk_for(definition) -> _Walk:
    # repr() formats every exclusion (~0.1-0.7 ms): computed once per definition object, not per walk.
    seen = _by_object.get(id(definition))
    if seen is not None and seen[0] is definition:
        return seen[1]
    key = repr(definition)
    with _lock:
        walk = _walks.get(key)
        if walk is None:
            if len(_walks) >= MAX_DEFINITIONS:
                _walks.clear()
            walk = _walks[key] = _Walk(definition)
        if len(_by_object) >= MAX_OBJECTS:
            _by_object.clear()
        # The definition is held, so its id cannot be reused by another object while it is here.
        _by_object[id(definition)] = (definition, walk)
        return walk


def _iterate_time_windows(self, start_timestamp: float, ignore_exclusions: bool = False):
    """Dagster's walk (windows starting at or after ``start_timestamp``), from the shared list."""
    if ignore_exclusions or not self.exclusions or start_timestamp < self.start_timestamp:
        yield from _original(self, start_timestamp, ignore_exclusions)
        return
    walk = _walk_for(self)
    while not walk.starts or walk.starts[-1] < start_timestamp:
        walk.extend(len(walk.windows) + 1)
    index = bisect.bisect_left(walk.starts, start_timestamp)
    while True:
        if index >= len(walk.windows):
            walk.extend(index + 1)
        yield walk.windows[index]
        index += 1


def _add_partitions_to_time_windows(self, initial_windows, partition_keys, validate: bool = True):
    """Dagster's merge of keys into a subset's windows; into an empty subset, computed once per key list."""
    if initial_windows or not self.partitions_def.exclusions:
        return _original_merge(self, initial_windows, partition_keys, validate)
    walk = _walk_for(self.partitions_def)
    key = (validate, tuple(partition_keys))
    merged = walk.merges.get(key)
    if merged is None:
        merged = _original_merge(self, initial_windows, partition_keys, validate)  # raises on an invalid key
        if len(walk.merges) >= MAX_MERGES:
            walk.merges.clear()
        walk.merges[key] = merged
    windows, added = merged
    return [*windows], added


def install() -> None:
    """Route the forward walk and the merge into an empty subset through the shared lists (once per process)."""
    global _original, _original_merge
    from dagster._core.definitions.partitions.definition.time_window import TimeWindowPartitionsDefinition
    from dagster._core.definitions.partitions.subset.time_window import TimeWindowPartitionsSubset

    if _original is not None:
        return
    _original = TimeWindowPartitionsDefinition._iterate_time_windows
    TimeWindowPartitionsDefinition._iterate_time_windows = _iterate_time_windows
    _original_merge = TimeWindowPartitionsSubset._add_partitions_to_time_windows
    TimeWindowPartitionsSubset._add_partitions_to_time_windows = _add_partitions_to_time_windows


def warm(definitions) -> None:
    """Walk each definition that takes the shared path to its last partition (a no-op for the others)."""
    from dagster._core.definitions.partitions.definition.time_window import TimeWindowPartitionsDefinition

    for definition in definitions:
        if isinstance(definition, TimeWindowPartitionsDefinition) and definition.exclusions:
            definition.get_num_partitions()


def _warm_workspace(workspace_process_context) -> None:
    try:
        asset_graph = workspace_process_context.create_request_context().asset_graph
        warm([node.partitions_def for node in asset_graph.asset_nodes if node.partitions_def is not None])
    except Exception:  # noqa: BLE001 - a warm-up only: the backfill walks it itself if this fails
        logging.getLogger(__name__).warning("partition walk warm-up failed; backfills walk on first use",
                                            exc_info=True)


def install_daemon_warmup() -> None:
    """Start the backfill daemon's loop with a warm-up thread over its workspace's definitions (once)."""
    from dagster._daemon.daemon import BackfillDaemon

    core_loop = BackfillDaemon.core_loop
    if getattr(core_loop, "warms_partition_walks", False):
        return

    def warmed_core_loop(self, workspace_process_context, shutdown_event):
        threading.Thread(target=_warm_workspace, args=(workspace_process_context,), name="partition-walk-warmup",
                         daemon=True).start()
        yield from core_loop(self, workspace_process_context, shutdown_event)

    warmed_core_loop.warms_partition_walks = True
    BackfillDaemon.core_loop = warmed_core_loop
