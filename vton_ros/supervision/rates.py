"""Event rates over a sliding window (no ROS): diagnostics' Hz and the metrics' live fps."""

from collections import deque
import threading
import time
from typing import Callable


class RateMeter:
    """Events per second and their mean latency over the last ``window`` seconds."""

    def __init__(self, window: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._clock = clock
        self._events: deque[tuple[float, float]] = deque()  # (time, latency)
        self._lock = threading.Lock()

    def _drop_old(self, now: float) -> None:
        while self._events and now - self._events[0][0] > self._window:
            self._events.popleft()

    def tick(self, latency: float = 0.0) -> None:
        """Record one event now that took ``latency`` seconds."""
        with self._lock:
            now = self._clock()
            self._events.append((now, latency))
            self._drop_old(now)

    def rate(self) -> float:
        """Return the events per second over the window (0.0 without any)."""
        with self._lock:
            self._drop_old(self._clock())
            return len(self._events) / self._window

    def latency(self) -> float:
        """Return the mean latency of the events in the window (0.0 without any)."""
        with self._lock:
            self._drop_old(self._clock())
            return sum(x for _, x in self._events) / len(self._events) if self._events else 0.0
