"""
tryon_server's monitoring plumbing: ``tryon/outcome`` and the queue on /diagnostics.

Every ended goal is told on ``tryon/outcome`` (vton_interfaces/TryOnOutcome: code, name,
stage timings; no image; reliable, depth OUTCOME_DEPTH), which the metrics exporter and
the mirror page's /metrics count (:mod:`vton_ros.nodes.metrics_feed`). The goals running
and waiting (``busy``, ``queue_depth``) go on the node's /diagnostics at its period and at
each goal's end.
"""

from typing import Any

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from vton_interfaces.action import TryOn
from vton_interfaces.msg import StageTiming, TryOnOutcome

R = TryOn.Result
CODE_NAMES = {getattr(R, n): n for n in dir(R) if n.isupper() and isinstance(getattr(R, n), int)}
TOPIC = 'tryon/outcome'
OUTCOME_DEPTH = 100  # goals end seconds apart: a subscriber that lags loses none
QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=OUTCOME_DEPTH,
                 reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


class OutcomeTopic:
    """Publishes each ended goal of a node on tryon/outcome and its queue on /diagnostics."""

    def __init__(self, node: Any, admission: Any) -> None:
        """Create the publisher (plain: shutdown's SHUTTING_DOWN goals are told too)."""
        self._node = node
        self._admission = admission
        self._pub = node.create_publisher(TryOnOutcome, TOPIC, QOS)
        node.create_timer(node.setting('diagnostics.period'), self.report_load)

    def report_load(self) -> None:
        """Put the goals running and waiting on the node's /diagnostics."""
        self._node.diag.update(**self._admission.load())

    def publish(self, result: TryOn.Result) -> None:
        """Tell how a goal ended (its result's code and timings)."""
        timings = [StageTiming(name=t.name, seconds=t.seconds) for t in result.timings]
        self._pub.publish(TryOnOutcome(error_code=result.error_code,
                                       code=CODE_NAMES.get(result.error_code, 'UNKNOWN'),
                                       timings=timings))
        self.report_load()
