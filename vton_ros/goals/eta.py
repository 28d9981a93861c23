"""
The time a try-on has left, from this server's own measured step times.

The pipeline reports after each denoising step. :class:`StepTimes` keeps, per kind of run
(what sets a step's cost: size, steps, guidance, caching, previews), the seconds of each
step and of the tail (the last step to the result: VAE decode, paste back, the gap before
the result). At step k the estimate is what the remaining steps and the tail took last
time, scaled by this run's pace so far against last time's. With no run of that kind yet:
a run of the same size with another step count gives its mean step and tail; else this
run's mean step times the steps left, from its second step on. Before that the time left
is :data:`UNKNOWN` (negative, as the TryOn feedback's ``eta_sec`` says).
"""

from dataclasses import dataclass
import threading

UNKNOWN = -1.0  # eta_sec when there is no measurement to go by yet
KEPT_RUNS = 32  # kinds of run remembered (goal images of many sizes make many kinds)


@dataclass(frozen=True)
class RunTimes:
    """One finished run: seconds of steps 2..N (step 1 includes the encode) and the tail."""

    steps: tuple[float, ...]  # steps[i] = seconds of step i + 2
    tail: float

    def mean_step(self) -> float:
        """Mean seconds of a step (0.0 when only one step ran)."""
        return sum(self.steps) / len(self.steps) if self.steps else 0.0


class StepTimes:
    """The last run of each kind; thread-safe (goals may run while another records)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[tuple, RunTimes] = {}

    def record(self, kind: tuple, total: int, run: RunTimes) -> None:
        """Remember a finished run of ``total`` steps (``kind`` from :func:`run_kind`)."""
        with self._lock:
            self._runs.pop((kind, total), None)  # the newest last
            self._runs[(kind, total)] = run
            while len(self._runs) > KEPT_RUNS:
                del self._runs[next(iter(self._runs))]

    def remaining(self, kind: tuple, total: int, step: int, steps: list[float]) -> float:
        """
        Seconds left after ``step`` of ``total`` (1-based), or UNKNOWN.

        steps: this run's measured seconds of steps 2..step (empty at step 1).
        """
        with self._lock:
            same = self._runs.get((kind, total))
            similar = next((r for (k, _), r in reversed(self._runs.items()) if k == kind),
                           None)
        left = total - step
        if same is not None and len(same.steps) == total - 1:
            before = sum(same.steps[:len(steps)])
            pace = sum(steps) / before if steps and before > 0 else 1.0
            return pace * (sum(same.steps[len(steps):]) + same.tail)
        if similar is not None and similar.steps:
            mean = sum(steps) / len(steps) if steps else similar.mean_step()
            return left * mean + similar.tail * mean / similar.mean_step()
        if steps:
            return left * sum(steps) / len(steps)
        return UNKNOWN


def run_kind(height: int, width: int, guidance: float, guidance_start: float,
             guidance_end: float, cache_interval: int, scheduler: str, preview_every: int,
             person_shape: tuple) -> tuple:
    """Return the key of runs whose steps cost the same (the step count apart)."""
    return (height, width, guidance > 1.0, guidance_start, guidance_end, cache_interval,
            scheduler, preview_every, tuple(person_shape))
