"""Wall time and peak resident memory of a block of work.

Every asset reports both, so a user can see in the UI where time and memory go. Peak RSS is
sampled by a background thread (every 10 ms), which costs nothing measurable and, unlike
``ru_maxrss``, is the peak of *this* block rather than of the whole process so far.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psutil


@dataclass
class Measurement:
    duration_s: float = 0.0
    peak_rss_mb: float = 0.0
    start_rss_mb: float = 0.0

    def as_metadata(self) -> dict[str, float]:
        return {
            "duration_s": round(self.duration_s, 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
        }


class measure:
    """``with measure() as m: ...`` then read ``m.duration_s`` and ``m.peak_rss_mb``."""

    def __init__(self, interval_s: float = 0.01):
        self._interval = interval_s
        self._process = psutil.Process()
        self._stop = threading.Event()
        self.result = Measurement()

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            rss = self._process.memory_info().rss / 2**20
            if rss > self.result.peak_rss_mb:
                self.result.peak_rss_mb = rss

    def __enter__(self) -> Measurement:
        rss = self._process.memory_info().rss / 2**20
        self.result.start_rss_mb = rss
        self.result.peak_rss_mb = rss
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self.result

    def __exit__(self, *exc) -> None:
        self.result.duration_s = time.perf_counter() - self._t0
        self._stop.set()
        self._thread.join()
        rss = self._process.memory_info().rss / 2**20
        self.result.peak_rss_mb = max(self.result.peak_rss_mb, rss)
