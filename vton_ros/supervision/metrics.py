"""
The Prometheus metrics of one mirror (no ROS): what a store operator scrapes at /metrics.

:class:`MirrorMetrics` owns its own ``CollectorRegistry`` (never prometheus_client's
process-wide one) and is fed by :mod:`vton_ros.nodes.metrics_feed` from what the nodes
already publish: ``tryon/outcome`` (one message per ended goal), ``/diagnostics``,
``tryon/model`` and ``tryon/live``. Exported (Prometheus conventions: ``vton_`` prefix,
``_total`` counters, ``_seconds`` histograms, no label with unbounded values):

- ``vton_tryons_total{code}``: goals ended, by result code (every code starts at 0);
- ``vton_stage_duration_seconds{stage}``: histogram of each stage of a try-on (the result's
  timings: preprocess, segmentation, vae_encode, denoise, vae_decode, safety_check, total,
  camera_wait);
- ``vton_queue_depth`` and ``vton_busy``: goals waiting, and 1 while a goal runs;
- ``vton_model_info{kind,name}``: the model tryon_server runs (kind real, demo or random);
- ``vton_settings_info{profile}``: the settings' profile of the stack (cpu,demo, ...);
- ``vton_node_restarts_total{node}``: a node seen again in another process;
- ``vton_live_fps``: ``tryon/live`` frames per second over the last LIVE_WINDOW seconds.
"""

import threading
import time
from typing import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, Histogram, \
    Info

from vton_ros.supervision.rates import RateMeter

CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'  # what render() returns
STAGES = ('preprocess', 'segmentation', 'vae_encode', 'denoise', 'vae_decode', 'safety_check',
          'total', 'camera_wait')
# seconds: a CPU step-less stage takes milliseconds, a 512x384 try-on on a CPU minutes
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0,
                 80.0, 160.0, 320.0)
UNKNOWN_CODE = 'UNKNOWN'
LIVE_WINDOW = 5.0  # seconds of tryon/live arrivals the fps is measured over
NAME_CHARS = 80  # the longest model name or profile exported (a label, not free text)


class MirrorMetrics:
    """
    The metrics of one mirror in a registry of their own; every method is thread-safe.

    codes: the result codes' names (TryOn.Result's constants), each exported from 0;
    profile: the settings' profile ('' = not known); clock: for the live view's fps.
    """

    def __init__(self, codes: Iterable[str], profile: str = '',
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self._codes = frozenset(codes) | {UNKNOWN_CODE}
        self._tryons = Counter('vton_tryons', 'Try-on goals ended, by result code',
                               ['code'], registry=reg)
        for code in sorted(self._codes):
            self._tryons.labels(code=code)
        self._stages = Histogram('vton_stage_duration_seconds', 'Seconds each stage of a '
                                 'try-on took (the TryOn result timings)', ['stage'],
                                 buckets=STAGE_BUCKETS, registry=reg)
        self._queue = Gauge('vton_queue_depth', 'Try-on goals waiting their turn', registry=reg)
        self._busy = Gauge('vton_busy', '1 while a try-on runs, else 0', registry=reg)
        self._model = Info('vton_model', 'The model tryon_server runs (kind: real, demo or '
                           'random)', registry=reg)
        self._model.info({'kind': 'unknown', 'name': ''})
        settings = Info('vton_settings', "The stack's settings profile", registry=reg)
        settings.info({'profile': profile[:NAME_CHARS] or 'unknown'})
        self._restarts = Counter('vton_node_restarts', 'Times a node was seen again in another '
                                 'process (respawned or restarted)', ['node'], registry=reg)
        self._live = RateMeter(LIVE_WINDOW, clock)
        fps = Gauge('vton_live_fps', 'Frames per second of the live view (tryon/live) over the '
                    f'last {LIVE_WINDOW:g} s', registry=reg)
        fps.set_function(self._live.rate)
        self._instances: dict[str, str] = {}  # node -> the process last seen
        self._lock = threading.Lock()

    def outcome(self, code: str, timings: Mapping[str, float]) -> None:
        """Count a goal that ended with ``code``; observe its stage timings (seconds)."""
        self._tryons.labels(code=code if code in self._codes else UNKNOWN_CODE).inc()
        for stage, seconds in timings.items():
            if stage in STAGES and seconds >= 0.0:
                self._stages.labels(stage=stage).observe(seconds)

    def queue(self, depth: int, busy: bool) -> None:
        """Set the goals waiting and whether one runs (tryon_server's /diagnostics)."""
        self._queue.set(max(0, depth))
        self._busy.set(1 if busy else 0)

    def model(self, kind: str, name: str) -> None:
        """Set the model tryon_server runs (tryon/model)."""
        self._model.info({'kind': kind[:NAME_CHARS], 'name': name[:NAME_CHARS]})

    def seen(self, node: str, instance: str) -> bool:
        """
        Note that ``node`` runs as process ``instance``; True (and counted) for a restart.

        The first sight of a node is no restart: one that restarted before the metrics
        started is not counted.
        """
        with self._lock:
            last = self._instances.get(node)
            self._instances[node] = instance
        if last is None or last == instance:
            return False
        self._restarts.labels(node=node).inc()
        return True

    def live_frame(self) -> None:
        """Note one frame of the live view."""
        self._live.tick()

    def render(self) -> bytes:
        """Return every metric in the Prometheus text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)


def diagnostic_values(values: Iterable[tuple[str, str]]) -> tuple[str | None, int, bool]:
    """
    Read tryon_server's /diagnostics key/values: (process id or None, queue depth, busy).

    Missing or unreadable values read as no process id, an empty queue, not busy.
    """
    found = dict(values)

    def number(key: str) -> int:
        try:
            return int(found.get(key, '0'))
        except ValueError:
            return 0
    return found.get('pid') or None, number('queue_depth'), number('busy') > 0
