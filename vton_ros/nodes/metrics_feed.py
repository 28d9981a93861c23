"""
The subscriptions that feed a :class:`~vton_ros.supervision.metrics.MirrorMetrics`.

Used by metrics_exporter and by mirror_ui (whose page serves /metrics). Sources, all
published by the stack anyway: ``tryon/outcome`` (each ended goal: code and timings),
``/diagnostics`` (tryon_server's ``busy`` and ``queue_depth``; every node's ``pid``, whose
change is a restart), ``tryon/model`` (latched) and ``tryon/live`` (its arrivals make the
live view's fps; taken raw, never decoded). Only the nodes of this node's namespace count:
/diagnostics is one topic for every mirror on the graph. The settings' profile comes from
``VTON_PROFILE``, which tryon_bringup and the launch file set.
"""

import os
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image
from std_msgs.msg import String
from vton_interfaces.msg import TryOnOutcome

from vton_ros.goals.model_identity import ModelIdentity, TOPIC as MODEL_TOPIC
from vton_ros.nodes import common, outcome
from vton_ros.settings.stack import PROFILE_ENV
from vton_ros.supervision.metrics import diagnostic_values, MirrorMetrics

DIAGNOSTICS_DEPTH = 50  # every node of every mirror on the graph sends one per period
STATUS_PREFIX = 'vton_ros: '  # common.Diagnostics' status names: 'vton_ros: /ns/node'
MODEL_MESSAGE_CHARS = 1024  # a tryon/model message is a few dozen characters


class MetricsFeed:
    """Subscribes ``node`` to the metrics' sources; ``metrics`` renders them."""

    def __init__(self, node: Any, views: bool = True) -> None:
        """
        Subscribe the node to the sources.

        With ``views`` False the node subscribes to tryon/live and tryon/model itself (the
        mirror page) and passes them on (:meth:`live_frame`, :meth:`model`).
        """
        self.metrics = MirrorMetrics(outcome.CODE_NAMES.values(),
                                     os.environ.get(PROFILE_ENV, ''))
        self._node = node
        self._namespace = node.get_namespace().rstrip('/')
        node.create_subscription(TryOnOutcome, outcome.TOPIC, self._outcome, outcome.QOS)
        node.create_subscription(DiagnosticArray, '/diagnostics', self._diagnostics,
                                 DIAGNOSTICS_DEPTH)
        if views:
            node.create_subscription(String, MODEL_TOPIC, self._model, common.LATCHED_QOS)
            node.create_subscription(Image, 'tryon/live', self._live, node.image_qos(),
                                     raw=True)

    def live_frame(self) -> None:
        """Count one frame of the live view (a node that subscribes to tryon/live itself)."""
        self.metrics.live_frame()

    def _live(self, _data: bytes) -> None:
        self.metrics.live_frame()

    def _outcome(self, msg: TryOnOutcome) -> None:
        self.metrics.outcome(msg.code, {t.name: t.seconds for t in msg.timings})

    def model(self, model: ModelIdentity) -> None:
        """Set the model tryon_server runs (a node that subscribes to tryon/model itself)."""
        self.metrics.model(model.kind, model.name)

    def _model(self, msg: String) -> None:
        model = read_model(self._node, msg)
        if model is not None:
            self.model(model)

    def _diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if not status.name.startswith(STATUS_PREFIX):
                continue
            namespace, _, node = status.name[len(STATUS_PREFIX):].rpartition('/')
            if namespace != self._namespace:
                continue  # another mirror's
            pid, depth, busy = diagnostic_values((kv.key, kv.value) for kv in status.values)
            if pid is not None:
                self.metrics.seen(node, f'{status.hardware_id}/{pid}')
            if node == 'tryon_server':
                self.metrics.queue(depth, busy)


def read_model(node: Any, msg: String) -> ModelIdentity | None:
    """Parse a tryon/model message; None (and a throttled warning) for an unreadable one."""
    try:
        return ModelIdentity.from_json(msg.data[:MODEL_MESSAGE_CHARS])
    except ValueError:
        node.get_logger().warning('unreadable tryon/model message', throttle_duration_sec=60.0)
        return None
