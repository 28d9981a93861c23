"""
The mirror's try-on session, without ROS: one goal at a time, the frozen frame, the state.

A tap sends a goal for the live camera (the server takes its latest frame and mask); the
frame the result was made from (found by its stamp among the recent frames) becomes the
frozen frame, and later taps send it as the person image, with the mask of the last result
when the cloth type is the same, so garments are compared on one pose. A cancel pressed
before the goal's acceptance arrives is sent as soon as it does. The node drives the
``on_*`` methods from its ROS callbacks; :class:`GoalPort` is the node's side.
"""

from collections import OrderedDict
from dataclasses import dataclass
import threading
import time
from typing import Any, Callable, Hashable, Protocol

import numpy as np

from vton_ros.ui import hub as kinds, images
from vton_ros.ui.catalog import Garments
from vton_ros.ui.sentences import error_sentence, state_sentence

IN_FLIGHT = ('sending', 'running', 'canceling')


@dataclass(frozen=True)
class GoalSpec:
    """What one try-on asks for (uint8 RGB images, HxW mask; None = the server's)."""

    garment_id: str  # '' when garment_image is given
    garment_image: np.ndarray | None
    cloth_type: str  # '' = the catalogue's or the server's default
    person: np.ndarray | None
    mask: np.ndarray | None


@dataclass(frozen=True)
class Frozen:
    """The frame of the last result, its mask and the cloth type that mask is for."""

    person: np.ndarray
    mask: np.ndarray | None
    cloth_type: str


class GoalPort(Protocol):
    """The node's side: send a goal (answers come back through ``Session.on_*``), cancel."""

    def send(self, seq: int, spec: GoalSpec) -> None:
        """Send the goal numbered ``seq``."""

    def cancel(self, handle: Any) -> None:
        """Ask the server to cancel an accepted goal."""


class FrameRing:
    """
    The last ``size`` camera frames by stamp (the result says which one it used).

    A try-on outlasts the ring (30 frames are 2 s at 15 fps), so :meth:`pin` keeps the
    frames of the tap (the server takes its latest frame with a mask, one of these) and the
    next ``size`` // 3 until :meth:`unpin`.
    """

    def __init__(self, size: int = 30) -> None:
        self._size = size
        self._frames: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._pinned: dict[Hashable, np.ndarray] | None = None
        self._room = 0  # frames the pin still takes after the tap
        self._lock = threading.Lock()

    def add(self, stamp: Hashable, rgb: np.ndarray) -> None:
        """Keep a frame."""
        with self._lock:
            self._frames[stamp] = rgb
            while len(self._frames) > self._size:
                self._frames.popitem(last=False)
            if self._pinned is not None and self._room > 0:
                self._pinned[stamp] = rgb
                self._room -= 1

    def pin(self) -> None:
        """Keep the frames so far, and the next few, until :meth:`unpin`."""
        with self._lock:
            self._pinned = dict(self._frames)
            self._room = self._size // 3

    def unpin(self) -> None:
        """Let the pinned frames go."""
        with self._lock:
            self._pinned = None

    def get(self, stamp: Hashable) -> np.ndarray | None:
        """Return the frame of this stamp (in the ring or pinned), or None."""
        with self._lock:
            frame = self._frames.get(stamp)
            if frame is None and self._pinned is not None:
                frame = self._pinned.get(stamp)
            return frame


class Session:
    """State machine of the page: idle, sending, running, canceling, result, error, offline."""

    def __init__(self, port: GoalPort, garments: Garments,
                 publish_state: Callable[[dict], None],
                 publish_image: Callable[[int, bytes], None], quality: int = 85) -> None:
        self._port = port
        self._garments = garments
        self._publish_state = publish_state
        self._publish_image = publish_image
        self._quality = quality
        self._lock = threading.RLock()
        self.frames = FrameRing()
        self._seq = 0
        self._handle: Any = None
        self._cancel_pending = False
        self._frozen: Frozen | None = None
        self._cloth_type = ''
        self._server_ready = False
        self._tap = 0.0
        self._state: dict = {'state': 'offline'}
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

    # ---- the page's commands ---------------------------------------------------------
    def try_on(self, garment_id: str) -> None:
        """Start a try-on of a listed garment; ignored (with a status) while one runs."""
        with self._lock:
            garment = self._garments.get(garment_id)
            if garment is None:
                return  # not an id this page listed
            if self.state in IN_FLIGHT:
                self._publish_state(dict(self._state, status=state_sentence('busy')))
                return
            if not self._server_ready:
                self._set('offline')
                return
            frozen = self._frozen
            reuse_mask = frozen is not None and frozen.cloth_type == garment.cloth_type
            spec = GoalSpec(garment.gid if garment.image is None else '', garment.image,
                            garment.cloth_type, frozen.person if frozen else None,
                            frozen.mask if reuse_mask else None)
            self._seq += 1
            self._handle = None
            self._cancel_pending = False
            self._cloth_type = garment.cloth_type
            self._tap = time.monotonic()
            if frozen is None:
                self.frames.pin()  # the live frame the server takes is among these
            self._set('sending', garment=garment.gid)
            self._port.send(self._seq, spec)

    def cancel(self) -> None:
        """Cancel the try-on; before its acceptance arrives, cancel it as soon as it does."""
        with self._lock:
            if self.state == 'sending':
                self._cancel_pending = True
            elif self.state == 'running' and self._handle is not None:
                self._port.cancel(self._handle)
            else:
                return
            self._set('canceling', **_progress(self._state))

    def go_live(self) -> None:
        """Drop the frozen frame (not during a try-on)."""
        with self._lock:
            if self.state not in IN_FLIGHT:
                self._frozen = None
                self._set('idle' if self._server_ready else 'offline')

    # ---- the node's events -----------------------------------------------------------
    def server_ready(self, ready: bool) -> None:
        """Take note that the action server appeared or went away."""
        with self._lock:
            if ready == self._server_ready:
                return
            self._server_ready = ready
            if not ready:
                self._seq += 1  # a try-on in flight will not end: its late answers are dropped
                self.frames.unpin()
                self._set('offline')
            elif self.state == 'offline':
                self._set('idle')

    def on_accepted(self, seq: int, handle: Any) -> None:
        """Take goal ``seq``'s acceptance: a cancel pressed meanwhile goes out now."""
        with self._lock:
            if seq != self._seq:
                return
            self._handle = handle
            if self._cancel_pending:
                self._port.cancel(handle)
            else:
                self._set('running', step=0, total=0, eta=0.0)

    def on_rejected(self, seq: int, code: str = 'REJECTED') -> None:
        """Take goal ``seq``'s refusal (server busy), or a failure to send it (``code``)."""
        with self._lock:
            if seq == self._seq:
                self.frames.unpin()
                self._set('error', error_sentence(code), code=code)

    def on_feedback(self, seq: int, step: int, total: int, eta: float,
                    preview: np.ndarray | None) -> None:
        """Show goal ``seq``'s progress, with a preview image on some steps."""
        with self._lock:
            if seq != self._seq or self.state not in ('running', 'canceling'):
                return
            if preview is not None:
                self._publish_image(kinds.PREVIEW, images.jpeg(preview, self._quality))
            self._state.update(step=int(step), total=int(total), eta=round(float(eta), 1))
            self._publish_state(self._state)

    def on_result(self, seq: int, code: str, image: np.ndarray | None,
                  mask: np.ndarray | None, stamp: Hashable,
                  server_total: float) -> None:
        """Show goal ``seq``'s end: ``code`` is a TryOn.Result constant name."""
        with self._lock:
            if seq != self._seq:
                return
            seconds = time.monotonic() - self._tap
            before = self._frozen.person if self._frozen else self.frames.get(stamp)
            self.frames.unpin()
            if code != 'SUCCESS' or image is None:
                self._set('error', error_sentence(code), code=code)
                return
            if before is None or before.shape != image.shape:
                before = image  # the frame was not received here: no compare
            self._frozen = Frozen(before, mask, self._cloth_type)
            self._publish_image(kinds.BEFORE, images.jpeg(before, self._quality))
            self._publish_image(kinds.RESULT, images.jpeg(image, self._quality))
            self._set('result', code=code, step=self._state.get('total', 0),
                      total=self._state.get('total', 0), server_total=round(server_total, 3),
                      tap_to_result=round(seconds, 3))


def _progress(state: dict) -> dict:
    return {k: state[k] for k in ('step', 'total', 'eta') if k in state}
