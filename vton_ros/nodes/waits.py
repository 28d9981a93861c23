"""
Bounded waits on rclpy futures, and a goal request that cannot lose its answer.

rclpy's Kilted ActionClient.send_goal_async registers the goal request's future twice: once
under its lock right after sending, then again with a new Future after the lock is released.
A reply handled by a spinning thread between the two completes the first future, whose
done callback unregisters the sequence number; the second (the one returned) then never
completes. :class:`SafeActionClient` registers it once under the client's lock (any
executor), so no reply can be handled in between; :func:`wait_future` bounds every wait and
says what did not come.
"""

import time
from typing import Any, Callable

from rclpy.action import ActionClient
from rclpy.task import Future

POLL = 0.02  # seconds between looks at a future


class WaitTimeout(TimeoutError):
    """A future did not complete in time; the message says which and how long."""


def wait_future(future: Future, timeout: float, what: str,
                give_up: Callable[[], bool] | None = None) -> Any:
    """
    Return ``future``'s result once it is done, completed by a spinning thread.

    Raises WaitTimeout naming ``what`` after ``timeout`` seconds, or at once when
    ``give_up()`` turns true (e.g. the server died: no answer will come).
    """
    deadline = time.monotonic() + timeout
    while not future.done():
        if give_up is not None and give_up():
            raise WaitTimeout(f'{what}: given up (no answer can come any more)')
        if time.monotonic() > deadline:
            raise WaitTimeout(f'{what}: no answer after {timeout:g} s')
        time.sleep(POLL)
    return future.result()


class SafeActionClient(ActionClient):
    """
    rclpy's ActionClient whose send_goal_async registers the request once, under its lock.

    Then no reply can be taken before its future is registered, whatever the executor
    (multi-threaded too). The feedback callback is registered before the goal is sent.
    Relies on the ActionClient internals of rclpy (Kilted and Humble name them alike).
    """

    def send_goal_async(self, goal: Any, feedback_callback: Callable[[Any], None] | None = None,
                        goal_uuid: Any = None) -> Future:
        """Send a goal; return the future of its goal handle (completed by the executor)."""
        request = self._action_type.Impl.SendGoalService.Request()
        request.goal_id = goal_uuid if goal_uuid is not None else self._generate_random_uuid()
        request.goal = goal
        future = Future()
        with self._lock:
            if feedback_callback is not None:
                self._feedback_callbacks[bytes(request.goal_id.uuid)] = feedback_callback
            sequence = self._client_handle.send_goal_request(request)
            self._pending_goal_requests[sequence] = future
            self._goal_sequence_number_to_goal_id[sequence] = request.goal_id
            future.add_done_callback(self._remove_pending_goal_request)
            self.add_future(future)
        return future
