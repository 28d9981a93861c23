"""
One shopper's session on the mirror page, without ROS: one per open page (WebSocket).

A tap sends the person photo itself: the newest camera frame with its mask (see
:class:`~vton_ros.ui.frames.Camera`), or, after a result, that result's frame (the frozen
frame), with the result's mask when the cloth type is the same, so garments are compared
on one pose. The "before" of the compare is the frame sent (shown from the tap on), never
a frame looked up later. A cancel pressed before the goal's acceptance arrives is sent as
soon as it does. Only this page's own try-on can be cancelled from it; taps and cancels
are rate-limited per page; "Please wait" goes to the page that tapped only. Every wait for
the server is bounded (``answer_timeout`` seconds without acceptance, feedback or result).
"""

from dataclasses import dataclass
import threading
import time
from typing import Any, Callable, Protocol

import numpy as np

from vton_ros.ui import hub as kinds, images
from vton_ros.ui.catalog import Garments
from vton_ros.ui.frames import Camera, Shot
from vton_ros.ui.sentences import error_sentence, state_sentence

IN_FLIGHT = ('sending', 'running', 'canceling')
NO_ANSWER = 'NO_ANSWER'  # the page's own code: the server did not answer in time


@dataclass(frozen=True)
class GoalSpec:
    """What one try-on asks for (uint8 RGB images, HxW mask; None = the server's)."""

    garment_id: str  # '' when garment_image is given
    garment_image: np.ndarray | None
    cloth_type: str  # '' = the catalogue's or the server's default
    person: np.ndarray
    mask: np.ndarray | None


@dataclass(frozen=True)
class Frozen:
    """The frame of the last result, its mask and the cloth type that mask is for."""

    shot: Shot
    cloth_type: str


@dataclass(frozen=True)
class Rules:
    """A page's limits: JPEG quality, camera freshness, answer wait, tap and cancel rates."""

    jpeg_quality: int = 85
    max_age: float = 10.0  # seconds: the oldest camera frame a tap dresses
    answer_timeout: float = 60.0  # seconds without any answer of the server
    live_cloth_type: str = 'upper'  # the cloth type of the camera's masks
    rate: float = 1.0  # taps (and cancels) per second, sustained
    burst: int = 4  # taps (and cancels) at once


class GoalPort(Protocol):
    """The node's side: send a goal (answers come back through ``Session.on_*``), cancel."""

    def send(self, session: 'Session', seq: int, spec: GoalSpec) -> None:
        """Send the goal numbered ``seq`` of ``session``."""

    def cancel(self, handle: Any) -> None:
        """Ask the server to cancel an accepted goal."""


class Gate(Protocol):
    """The mirror's one try-on at a time, across pages."""

    def claim(self, session: 'Session') -> bool:
        """Take the try-on slot for ``session``; False when another page holds it."""

    def release(self, session: 'Session') -> None:
        """Give the slot back (if ``session`` holds it)."""


class Bucket:
    """A token bucket: ``rate`` events a second, ``burst`` at once."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self._rate, self._burst, self._clock = rate, float(burst), clock
        self._tokens, self._last = float(burst), clock()

    def take(self) -> bool:
        """Spend one token; False when none is left."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class Session:
    """State machine of one page: idle, sending, running, canceling, result, error, offline."""

    def __init__(self, page: str, port: GoalPort, garments: Garments, camera: Camera,
                 gate: Gate, publish_state: Callable[[dict], None],
                 publish_image: Callable[[int, bytes], None], rules: Rules = Rules(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.page = page  # the page's secret id: its uploads are filed under it
        self._port = port
        self._garments = garments
        self._camera = camera
        self._gate = gate
        self._publish_state = publish_state
        self._publish_image = publish_image
        self._pictures: dict[int, bytes] = {}  # the before and result, for a page that resumes
        self.rules = rules  # replaced when the node's settings change
        self._clock = clock
        self._taps = Bucket(rules.rate, rules.burst, clock)
        self._cancels = Bucket(rules.rate, rules.burst, clock)
        self._lock = threading.RLock()
        self._seq = 0
        self._handle: Any = None
        self._cancel_pending = False
        self._shot: Shot | None = None  # the frame of the try-on in flight
        self._frozen: Frozen | None = None
        self._cloth_type = ''
        self._server_ready = False
        self._tap = 0.0
        self._deadline = 0.0
        self.touched = clock()  # the last command of the page
        self._state: dict = {}
        self._set('offline')

    @property
    def state(self) -> str:
        """Return the current state's name."""
        with self._lock:
            return self._state['state']

    def _set(self, state: str, status: str = '', **extra: Any) -> None:
        self._state = {'state': state, 'status': status or state_sentence(state),
                       'frozen': self._frozen is not None, **extra}
        self._publish_state(self._state)

    def _error(self, code: str) -> None:
        self._set('error', error_sentence(code), code=code)

    # ---- the page's commands ---------------------------------------------------------
    def try_on(self, garment_id: str) -> None:
        """Start a try-on of a garment this page lists; answered with a status when busy."""
        with self._lock:
            garment = self._garments.get(garment_id, self.page)
            if garment is None or not self._taps.take():
                return  # not an id this page listed, or a tap storm
            self.touched = self._clock()
            if self.state in IN_FLIGHT or (self._server_ready and
                                           not self._gate.claim(self)):
                self._publish_state(dict(self._state, status=state_sentence('busy'), busy=True))
                return
            if not self._server_ready:
                self._set('offline')
                return
            self._start(garment)

    def _start(self, garment: Any) -> None:
        cloth_type = garment.cloth_type or 'upper'
        frozen = self._frozen
        if frozen is not None:
            shot = frozen.shot
            mask = shot.mask if frozen.cloth_type == cloth_type else None
        else:
            shot, code = self._camera.shot(self.rules.max_age)
            if shot is None:
                self._gate.release(self)
                self._error(code)
                return
            mask = shot.mask if cloth_type == self.rules.live_cloth_type else None
        self._seq += 1
        self._handle = None
        self._cancel_pending = False
        self._shot = shot
        self._cloth_type = cloth_type
        self._tap = self._deadline = self._clock()
        self._deadline += self.rules.answer_timeout
        self._pictures.clear()
        self._picture(kinds.BEFORE, images.jpeg(shot.person, self.rules.jpeg_quality))
        self._set('sending', garment=garment.gid, focus=shot.focus)
        spec = GoalSpec(garment.gid if garment.image is None else '', garment.image,
                        garment.cloth_type, shot.person, mask)
        self._port.send(self, self._seq, spec)

    def cancel(self) -> None:
        """Cancel this page's try-on; before its acceptance arrives, as soon as it does."""
        with self._lock:
            if self.state in ('sending', 'running') and self._cancels.take():
                self.touched = self._clock()
                self._cancel()

    def _cancel(self) -> None:
        if self.state in ('sending', 'running'):
            if self.state == 'sending':
                self._cancel_pending = True
            elif self._handle is not None:
                self._port.cancel(self._handle)
            self._set('canceling', **_progress(self._state))

    def go_live(self) -> None:
        """Drop the frozen frame (not during a try-on)."""
        with self._lock:
            self.touched = self._clock()
            if self.state not in IN_FLIGHT:
                self._frozen = None
                self._pictures.clear()
                self._set('idle' if self._server_ready else 'offline')

    def touch(self) -> None:
        """Take note that the shopper of this page did something (an upload, a list)."""
        self.touched = self._clock()

    def forget(self) -> bool:
        """Forget the result, frozen frame and uploads (nobody is there); False if busy."""
        with self._lock:
            if self.state in IN_FLIGHT:
                return False
            self._frozen = None
            self._pictures.clear()
            self._garments.drop_uploads(self.page)  # before the page reloads its shelf
            self._set('idle' if self._server_ready else 'offline', reset=True)
            return True

    def holds_anything(self) -> bool:
        """Tell whether the page shows something of a shopper (a result, a frozen frame)."""
        with self._lock:
            return self._frozen is not None or self.state in ('result', 'error')

    def attach(self, publish_state: Callable[[dict], None],
               publish_image: Callable[[int, bytes], None]) -> None:
        """Send to a page that came back (a new WebSocket): its pictures, then its state."""
        with self._lock:
            self._publish_state = publish_state
            self._publish_image = publish_image
            for kind, data in self._pictures.items():
                publish_image(kind, data)
            publish_state(self._state)

    def _picture(self, kind: int, data: bytes) -> None:
        self._pictures[kind] = data
        self._publish_image(kind, data)

    def close(self) -> None:
        """End the page's try-on: the page went (the server must not work for nobody)."""
        with self._lock:
            self._cancel()

    # ---- the node's events -----------------------------------------------------------
    def server_ready(self, ready: bool) -> None:
        """Take note that the action server appeared or went away."""
        with self._lock:
            if ready == self._server_ready:
                return
            self._server_ready = ready
            if not ready:
                self._end()  # a try-on in flight will not end: its late answers are dropped
                self._set('offline')
            elif self.state == 'offline':
                self._set('idle')

    def check(self) -> None:
        """End a try-on whose server has not answered for ``answer_timeout`` seconds."""
        with self._lock:
            if self.state not in IN_FLIGHT or self._clock() < self._deadline:
                return
            if self._handle is not None:
                self._port.cancel(self._handle)  # it may still run: stop it if it does
            self._end()
            self._error(NO_ANSWER)

    def _end(self) -> None:
        """Drop the try-on in flight: its late answers are ignored, the slot is free."""
        self._seq += 1
        self._handle = None
        self._gate.release(self)

    def on_accepted(self, seq: int, handle: Any) -> None:
        """Take goal ``seq``'s acceptance: a cancel pressed meanwhile goes out now."""
        with self._lock:
            if seq != self._seq:
                return
            self._handle = handle
            self._deadline = self._clock() + self.rules.answer_timeout
            if self._cancel_pending:
                self._port.cancel(handle)
            else:
                self._set('running', step=0, total=0, eta=0.0, focus=self._shot.focus)

    def on_rejected(self, seq: int, code: str = 'REJECTED') -> None:
        """Take goal ``seq``'s refusal (server busy), or a failure to send it (``code``)."""
        with self._lock:
            if seq == self._seq:
                self._end()
                self._error(code)

    def on_feedback(self, seq: int, step: int, total: int, eta: float,
                    preview: np.ndarray | None) -> None:
        """Show goal ``seq``'s progress, with a preview image on some steps."""
        with self._lock:
            if seq != self._seq or self.state not in ('running', 'canceling'):
                return
            self._deadline = self._clock() + self.rules.answer_timeout
            if preview is not None:
                self._publish_image(kinds.PREVIEW,
                                    images.jpeg(preview, self.rules.jpeg_quality))
            self._state.update(step=int(step), total=int(total), eta=round(float(eta), 1))
            self._publish_state(self._state)

    def on_result(self, seq: int, code: str, image: np.ndarray | None,
                  mask: np.ndarray | None, server_total: float) -> None:
        """Show goal ``seq``'s end: ``code`` is a TryOn.Result constant name."""
        with self._lock:
            if seq != self._seq:
                return
            shot = self._shot
            self._end()
            if code != 'SUCCESS' or image is None or shot is None:
                self._error(code)
                return
            if shot.person.shape != image.shape:
                self._error('INVALID_IMAGE')  # the server broke its contract: no compare
                return
            if mask is not None and mask.shape != image.shape[:2]:
                mask = None
            self._frozen = Frozen(Shot(shot.person, mask, shot.stamp, shot.focus),
                                  self._cloth_type)
            self._picture(kinds.RESULT, images.jpeg(image, self.rules.jpeg_quality))
            total = self._state.get('total', 0)
            self._set('result', code=code, step=total, total=total, focus=shot.focus,
                      server_total=round(server_total, 3),
                      tap_to_result=round(self._clock() - self._tap, 3))


def _progress(state: dict) -> dict:
    return {k: state[k] for k in ('step', 'total', 'eta', 'focus') if k in state}
