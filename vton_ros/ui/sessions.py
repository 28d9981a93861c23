"""
The pages of the mirror, without ROS: one :class:`Session` per open page, one try-on at a time.

A new page starts at the live view. A page's uploads, result and frozen frame are its own;
when the page leaves (its WebSocket stays closed for RESUME seconds), they go. A page that
reconnects sooner (a dropped connection, a missed heartbeat on a loaded machine) gets its
session back. When no person has been seen (no mask with pixels, no command of
any page) for ``idle_reset`` seconds, every page forgets its result, frozen frame, previews
and uploads and returns to the live view: the next shopper never sees the last one's.

The try-on slot is fair: a page told "Please wait" goes first when the slot comes free
(for ``GRACE`` seconds), so a page that taps and cancels in a loop cannot keep the others'
taps from ever starting.
"""

import secrets
import threading
import time
from typing import Callable

from vton_ros.ui.catalog import Garments
from vton_ros.ui.frames import Camera
from vton_ros.ui.session import GoalPort, Rules, Session

GRACE = 5.0  # seconds a freed slot is kept for the pages that were told "Please wait"
RESUME = 30.0  # seconds a page's session waits for its page to reconnect


class Sessions:
    """The open pages' sessions, the try-on slot they share, the idle reset."""

    def __init__(self, port: GoalPort, garments: Garments, camera: Camera,
                 rules: Rules = Rules(), idle_reset: float = 20.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._port = port
        self._garments = garments
        self.camera = camera
        self._rules = rules
        self._idle_reset = idle_reset
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}  # page id: session
        self._holder: Session | None = None
        self._waiting: set[str] = set()  # pages told "Please wait" (ids)
        self._away: dict[str, float] = {}  # pages whose WebSocket closed: id, when
        self._freed = 0.0  # clock time the slot was last freed
        self._server_ready = False

    def join(self, publish_state: Callable[[dict], None],
             publish_image: Callable[[int, bytes], None], page: str = '') -> Session:
        """
        Start the session of a new page (it shows the live view), or resume one.

        ``page``: the id of a page whose WebSocket closed less than RESUME seconds ago
        (a reconnect: its try-on, result and uploads are still its own).
        """
        with self._lock:
            session = self._sessions.get(page) if self._away.pop(page, None) else None
        if session is not None:
            session.attach(publish_state, publish_image)
            return session
        session = Session(secrets.token_urlsafe(16), self._port, self._garments, self.camera,
                          self, publish_state, publish_image, self._rules, self._clock)
        with self._lock:
            ready = self._server_ready
            self._sessions[session.page] = session
        session.server_ready(ready)
        return session

    def leave(self, session: Session) -> None:
        """Note that a page's WebSocket closed: its session ends unless it comes back."""
        with self._lock:
            if session.page in self._sessions:
                self._away[session.page] = self._clock()
                self._waiting.discard(session.page)  # a page away is not waiting to tap

    def _end_away(self) -> None:
        """End the sessions of pages gone for RESUME seconds: cancel, forget uploads."""
        now = self._clock()
        with self._lock:
            gone = [self._sessions.pop(p) for p, t in list(self._away.items())
                    if now - t > RESUME]
            for session in gone:
                del self._away[session.page]
                self._waiting.discard(session.page)
        for session in gone:
            session.close()
            self._garments.drop_uploads(session.page)

    def set_rules(self, rules: Rules) -> None:
        """Use new limits (the node's settings changed) in every page, now and to come."""
        with self._lock:
            self._rules = rules
            for session in self._sessions.values():
                session.rules = rules

    def pages(self) -> list[Session]:
        """Return the open pages' sessions."""
        with self._lock:
            return list(self._sessions.values())

    def find(self, page: str) -> Session | None:
        """Return the session of an open page's id, or None."""
        with self._lock:
            return self._sessions.get(page) if page else None

    # ---- Gate: one try-on at a time --------------------------------------------------
    def claim(self, session: Session) -> bool:
        """Take the try-on slot for ``session``; False while another page holds or awaits it."""
        with self._lock:
            if self._holder is None and self._clock() - self._freed > GRACE:
                self._waiting.clear()  # nobody came back for it
            if self._holder is session or (self._holder is None and (
                    not self._waiting or session.page in self._waiting)):
                self._waiting.discard(session.page)
                self._holder = session
                return True
            self._waiting.add(session.page)
            return False

    def release(self, session: Session) -> None:
        """Give the slot back (if ``session`` holds it)."""
        with self._lock:
            if self._holder is session:
                self._holder = None
                self._freed = self._clock()

    def running(self) -> Session | None:
        """Return the session whose try-on is in flight, or None."""
        with self._lock:
            return self._holder

    # ---- the node's clock and events -------------------------------------------------
    def server_ready(self, ready: bool) -> None:
        """Tell every page that the action server appeared or went away."""
        with self._lock:
            self._server_ready = ready
        for session in self.pages():
            session.server_ready(ready)

    def tick(self) -> int:
        """Bound every page's wait for the server; do the idle reset. Return pages reset."""
        self._end_away()
        pages = self.pages()
        for session in pages:
            session.check()
        seen = max([self.camera.seen()] + [s.touched for s in pages])
        if self._clock() - seen < self._idle_reset:
            return 0
        reset = 0
        for session in pages:
            if (session.holds_anything() or self._garments.has_uploads(session.page)) \
                    and session.forget():
                reset += 1
        return reset
