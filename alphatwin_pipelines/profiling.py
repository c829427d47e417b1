"""Wall time and peak resident memory of a block of work.

Every asset reports both, so a user can see in the UI where time and memory go. Peak RSS is
sampled by a background thread (every 10 ms), which costs nothing measurable and, unlike
``ru_maxrss``, is the peak of *this* block rather than of the whole process so far. With
``children=True`` the sample is the sum over the process and its descendants (e.g. the worker
processes of a local Dask cluster), and ``cpu_s`` their CPU time in the block.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psutil


@dataclass
class Measurement:
    duration_s: float = 0.0
    peak_rss_mb: float = 0.0
    start_rss_mb: float = 0.0
    cpu_s: float = 0.0  # the block's CPU time: this process's, plus its descendants' with children=True
    process_peaks_mb: dict = field(default_factory=dict)  # pid -> that process's own peak RSS (children=True)

    def as_metadata(self) -> dict[str, float]:
        return {
            "duration_s": round(self.duration_s, 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
        }


class measure:
    """``with measure() as m: ...`` then read ``m.duration_s`` and ``m.peak_rss_mb``."""

    def __init__(self, interval_s: float = 0.01, children: bool = False):
        self._interval = interval_s
        self._process = psutil.Process()
        self._children = bool(children)
        self._stop = threading.Event()
        self.result = Measurement()

    def _processes(self) -> list:
        return [self._process, *self._process.children(recursive=True)] if self._children else [self._process]

    def _rss_mb(self) -> float:
        total, peaks = 0, self.result.process_peaks_mb
        for proc in self._processes():
            try:
                rss = proc.memory_info().rss
            except psutil.Error:  # a child that ended between the listing and the read
                continue
            total += rss
            if self._children:
                peaks[proc.pid] = max(peaks.get(proc.pid, 0.0), rss / 2**20)
        return total / 2**20

    def _cpu_s(self) -> dict:
        out = {}
        for proc in self._processes():
            try:
                t = proc.cpu_times()
                out[proc.pid] = t.user + t.system
            except psutil.Error:
                pass
        return out

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            rss = self._rss_mb()
            if rss > self.result.peak_rss_mb:
                self.result.peak_rss_mb = rss

    def __enter__(self) -> Measurement:
        rss = self._rss_mb()
        self.result.start_rss_mb = rss
        self.result.peak_rss_mb = rss
        self._cpu0 = self._cpu_s()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self.result

    def __exit__(self, *exc) -> None:
        self.result.duration_s = time.perf_counter() - self._t0
        self._stop.set()
        self._thread.join()
        self.result.peak_rss_mb = max(self.result.peak_rss_mb, self._rss_mb())
        cpu1 = self._cpu_s()
        self.result.cpu_s = sum(t - self._cpu0.get(pid, 0.0) for pid, t in cpu1.items())
