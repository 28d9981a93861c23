"""
rclpy goal-handle plumbing of tryon_server: terminal states and the clients of goals.

:class:`GoalClients` watches the graph for the clients of running and queued goals (the
method and its limits: :mod:`vton_ros.goals.client_watch`) and calls back with the goals whose
client has gone, so the server stops them with CLIENT_GONE and the next goal starts.
"""

import time
from typing import Callable

from rclpy.node import Node
from vton_interfaces.action import TryOn

from vton_ros.goals.client_watch import ClientWatch

R = TryOn.Result
CHECK_PERIOD = 0.5  # seconds between looks at the graph while goals are watched


def end_goal(goal_handle, code: int, wait: float = 10.0) -> None:
    """Move the goal to its terminal state: succeeded, canceled (once CANCELING) or aborted."""
    deadline = time.monotonic() + wait  # rclpy marks CANCELING after cancel_callback returns
    while code == R.CANCELED and not goal_handle.is_cancel_requested and \
            time.monotonic() < deadline:
        time.sleep(0.01)
    if goal_handle.is_active:
        if code == R.SUCCESS:
            goal_handle.succeed()
        elif code == R.CANCELED and goal_handle.is_cancel_requested:
            goal_handle.canceled()
        else:
            goal_handle.abort()


class GoalClients:
    """
    Which goals' clients left the graph; ``on_gone(key)`` is called once for each.

    The clients are the writers of the action's goal requests (DDS topic
    ``rq<namespace>/<action>/_action/send_goalRequest``), looked up every CHECK_PERIOD
    seconds while a goal is watched.
    """

    def __init__(self, node: Node, action: str, on_gone: Callable[[bytes], None]) -> None:
        namespace = node.get_namespace().rstrip('/')
        self._topic = f'rq{namespace}/{action}/_action/send_goalRequest'
        self._node = node
        self._on_gone = on_gone
        self._watch = ClientWatch()
        node.create_timer(CHECK_PERIOD, self._check)

    def _present(self) -> set[bytes]:
        return {bytes(info.endpoint_gid) for info in
                self._node.get_publishers_info_by_topic(self._topic, no_mangle=True)}

    def add(self, key: bytes) -> None:
        """Watch a goal that just arrived: its client is one of those present now."""
        self._watch.add(key, self._present())

    def forget(self, key: bytes) -> None:
        """Stop watching a goal that ended."""
        self._watch.forget(key)

    def _check(self) -> None:
        if self._watch.watching():
            for key in self._watch.gone(self._present()):
                self._on_gone(key)
