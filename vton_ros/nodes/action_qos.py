"""
QoS of the TryOn action's services, for tryon_server and for our clients.

rclpy's default service QoS keeps the last 10 requests. A burst of goals then overflows
the server's goal service while it validates earlier ones, and the overwritten requests
get no answer at all: neither accepted nor rejected. Here the goal, cancel and result
services keep every request (KEEP_ALL) or, when ``tryon.action_depth`` is set, that many.
Clients (tryon_client, the mirror page's node) keep every reply. Reliability and
durability stay the services' default (reliable, volatile), so any client still matches.
Feedback and status keep rclpy's defaults: one goal runs at a time.
"""

from typing import Any

from rclpy.qos import HistoryPolicy, qos_profile_services_default, QoSProfile

# rclpy's result_timeout is whole seconds
MIN_RESULT_TIMEOUT = 1


def service_qos(depth: int = 0) -> QoSProfile:
    """Service QoS holding a burst: KEEP_ALL for ``depth`` 0, else KEEP_LAST ``depth``."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_ALL if depth == 0 else HistoryPolicy.KEEP_LAST,
        depth=depth or qos_profile_services_default.depth,
        reliability=qos_profile_services_default.reliability,
        durability=qos_profile_services_default.durability)


def server_options(depth: int, result_timeout: float) -> dict[str, Any]:
    """
    Keyword arguments of rclpy's ActionServer: service QoS and how long results are kept.

    ``result_timeout``: seconds a finished goal's result stays available to a late result
    request (rclpy's default, 10 s, loses it for a slow client: status UNKNOWN).
    """
    qos = service_qos(depth)
    return {'goal_service_qos_profile': qos, 'cancel_service_qos_profile': qos,
            'result_service_qos_profile': qos,
            'result_timeout': max(MIN_RESULT_TIMEOUT, int(round(result_timeout)))}


def client_options() -> dict[str, Any]:
    """Keyword arguments of rclpy's ActionClient: every reply kept."""
    qos = service_qos(0)
    return {'goal_service_qos_profile': qos, 'cancel_service_qos_profile': qos,
            'result_service_qos_profile': qos}
