"""
Send an action goal and get the server's answer within a bound, whatever rclpy does.

Kilted's rclpy (9.x) ``ActionClient.send_goal_async`` registers a future for the request,
then a second one under the same sequence number. A goal response handled between the
two completes the first future, and the returned one stays pending for ever: the client
waits on a goal the server has accepted. Humble's rclpy registers one future. Our clients
use :class:`vton_ros.nodes.waits.SafeActionClient`, which registers once; a reply can still
be lost on the way (a LAN), so the answer is also read from the action's status topic: a
goal listed there was accepted, and a handle for it is made from its id (the result and
cancel requests need only that).
"""

import threading
import time
from typing import Callable
import uuid

from action_msgs.msg import GoalStatusArray
from rclpy.action import ActionClient
from rclpy.action.client import ClientGoalHandle
from rclpy.qos import qos_profile_action_status_default
from rclpy.task import Future
from unique_identifier_msgs.msg import UUID

POLL = 0.01  # seconds between checks of the answer


class GoalRequests:
    """Goal requests of one action client, answered by the reply or by the status topic."""

    def __init__(self, node, client: ActionClient, action_type, action: str) -> None:
        self._client, self._response = client, action_type.Impl.SendGoalService.Response
        self._lock = threading.Lock()
        self._waiting: set[bytes] = set()  # ids of the goals sent, not yet answered
        self._listed: set[bytes] = set()  # those of them the server's status named
        # goals whose acceptance came from the status topic (before, or without, the reply):
        # id -> the future of the reply
        self.from_status: dict[bytes, Future] = {}
        node.create_subscription(GoalStatusArray, f'{action}/_action/status', self._status,
                                 qos_profile_action_status_default)

    def _status(self, msg: GoalStatusArray) -> None:
        with self._lock:
            self._listed.update(self._waiting.intersection(
                bytes(s.goal_info.goal_id.uuid) for s in msg.status_list))

    def replies_missing(self) -> set[str]:
        """Hex ids of the goals taken from the status topic whose reply has not come (yet)."""
        with self._lock:
            return {key.hex() for key, future in self.from_status.items() if not future.done()}

    def send(self, goal, feedback_callback: Callable | None, timeout: float,
             give_up: Callable[[], bool] | None = None) -> ClientGoalHandle | None:
        """
        Send ``goal``; return its handle (accepted or rejected), None without an answer.

        Waits at most ``timeout`` seconds, also after Ctrl-C: a goal the server may have
        accepted must be known before it can be canceled. Returns None at once when
        ``give_up()`` turns true (e.g. the server died: no answer can come).
        """
        goal_id = UUID(uuid=list(uuid.uuid4().bytes))
        key = bytes(goal_id.uuid)
        with self._lock:
            self._waiting.add(key)
        try:
            return self._answer(goal, feedback_callback, goal_id, timeout, give_up)
        finally:
            with self._lock:
                self._waiting.discard(key)
                self._listed.discard(key)

    def _answer(self, goal, feedback_callback: Callable | None, goal_id: UUID,
                timeout: float, give_up: Callable[[], bool] | None) -> ClientGoalHandle | None:
        key = bytes(goal_id.uuid)
        future = self._client.send_goal_async(goal, feedback_callback=feedback_callback,
                                              goal_uuid=goal_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if future.done():
                return future.result()
            with self._lock:
                listed = key in self._listed
                if listed:
                    self.from_status[key] = future
            if listed:  # accepted; the reply went to the future rclpy did not return
                return ClientGoalHandle(self._client, goal_id, self._response(accepted=True))
            if give_up is not None and give_up():
                break
            time.sleep(POLL)
        return future.result() if future.done() else None
