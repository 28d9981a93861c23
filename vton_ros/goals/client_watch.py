"""
Goals whose client has left the ROS graph, without ROS.

The action protocol does not name a goal's client, and rclpy does not hand the server the
writer a request came from. What the server can see is the graph: every action client
owns a writer of the goal service's requests, and a goal can only have come from a writer
present when it arrived. :class:`ClientWatch` keeps that set of writers per goal and
reports the goal once none of them is left. A client that exits leaves the graph at once;
one that is killed (SIGKILL, power loss) leaves when its DDS lease expires: 5 s with the
project's Fast DDS profiles, 20 s with Fast DDS defaults (a client with its own profile).

Limits with several clients: the server cannot tell which of the clients present sent a
goal, so a goal is reported only when all of them have gone. With one client at a time
(a mirror page, a robot, a command line) that is exactly the goal's client; while another
client stays (a second page, a monitoring tool with an action client), the goal of a
client that died runs to its end as before. A live client is never taken for gone,
unless its process stalls for longer than its DDS lease.
"""

import threading
from typing import Hashable, Iterable


class ClientWatch:
    """Per goal, the clients that may have sent it; which goals have none left. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._senders: dict[Hashable, frozenset] = {}

    def add(self, key: Hashable, present: Iterable[bytes]) -> None:
        """Watch a goal: ``present`` are the client ids in the graph when it arrived."""
        senders = frozenset(present)
        if senders:  # none seen (graph not updated yet): never report this goal
            with self._lock:
                self._senders[key] = senders

    def forget(self, key: Hashable) -> None:
        """Stop watching a goal (it ended)."""
        with self._lock:
            self._senders.pop(key, None)

    def watching(self) -> bool:
        """Return True while some goal is watched (the graph is worth a look)."""
        with self._lock:
            return bool(self._senders)

    def gone(self, present: Iterable[bytes]) -> list:
        """Return the goals none of whose possible senders is in ``present``; forget them."""
        present = set(present)
        with self._lock:
            keys = [k for k, senders in self._senders.items() if not senders & present]
            for key in keys:
                del self._senders[key]
        return keys
