"""Progress lines while a study runs: trials done of the budget, best so far, time left.

Long studies are otherwise silent for minutes; a user watching the Dagster run log (or a
terminal) sees about ``lines`` lines per study, always including the last one.
"""

from __future__ import annotations

import time


class ProgressLogger:
    """An Optuna-style callback ``(study, trial)`` that writes to ``logger.info``.

    ``total`` is the study's trial budget. Counts and the best value cover the whole study, so a
    resumed study reports from where it stands; the time left is the mean seconds per trial run
    by this process times the trials still missing.
    """

    def __init__(self, logger, label: str, total: int, lines: int = 10, clock=time.perf_counter):
        self.logger, self.label, self.total = logger, label, max(int(total), 0)
        self.every = max(1, self.total // max(1, int(lines)))
        self.clock = clock
        self.ran = 0
        self._t0 = clock()

    def __call__(self, study, trial) -> None:
        from optuna.trial import TrialState

        self.ran += 1
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        done = len(trials)
        if done % self.every == 0 or done >= self.total:
            complete = [t for t in trials if t.state == TrialState.COMPLETE]
            best = max(complete, key=lambda t: (t.value, -t.number), default=None)
            pruned = len(trials) - len(complete)
            self.logger.info(self.line(done, pruned, best))

    def line(self, done: int, pruned: int, best) -> str:
        elapsed = self.clock() - self._t0
        left = elapsed / self.ran * max(self.total - done, 0) if self.ran else float("nan")
        text = f"best Sharpe {best.value:.3f} (trial {best.number})" if best else "no complete trial yet"
        return (f"{self.label}: {done}/{self.total} trials ({pruned} pruned), {text}, "
                f"{elapsed:.1f} s elapsed, ~{left:.1f} s left")


class Countdown:
    """Tasks done of a known total with the time left, for a line per finished task (studies,
    walk-forwards, reports). The time left is the mean seconds per finished task so far times the
    tasks left: tasks finish in any order on a cluster, so only the count is meaningful."""

    def __init__(self, total: int, clock=time.perf_counter):
        self.total, self.done, self.clock, self._t0 = int(total), 0, clock, clock()

    def tick(self) -> str:
        """Count one more task done; ``"k/total done, s elapsed, ~s left"``."""
        self.done += 1
        elapsed = self.clock() - self._t0
        left = elapsed / self.done * max(self.total - self.done, 0)
        return f"{self.done}/{self.total} done, {elapsed:.1f} s elapsed, ~{left:.1f} s left"
