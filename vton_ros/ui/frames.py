"""
What the mirror page knows of the camera, without ROS: recent frames, frame+mask pairs, presence.

A tap sends the person photo itself (with its mask when one came), so that the "before" of
the compare is by construction the frame the try-on was made from, however late the
result comes and however many frames the node dropped meanwhile. A person is seen when a
mask has pixels; the time of the last one drives the pages' idle reset.
"""

from collections import OrderedDict
from dataclasses import dataclass
import threading
import time
from typing import Callable, Hashable

import numpy as np

MASK_ON = 128  # mask values >= this are the person's garment region


@dataclass(frozen=True)
class Shot:
    """A camera frame to dress (HxWx3 uint8 RGB), its mask (HxW uint8) or None, its stamp."""

    person: np.ndarray
    mask: np.ndarray | None
    stamp: Hashable
    focus: float  # horizontal centre of the person, 0..1 of the width (0.5 when unknown)


def person_focus(mask: np.ndarray) -> float | None:
    """Return the horizontal centre (0..1) of the mask's pixels, or None when it is empty."""
    columns = np.flatnonzero((mask >= MASK_ON).any(axis=0))
    if columns.size == 0:
        return None
    return float((columns[0] + columns[-1] + 1) / 2 / mask.shape[1])


class Camera:
    """The last ``size`` frames by stamp, the newest frame+mask pair and the last person seen."""

    def __init__(self, size: int = 30, clock: Callable[[], float] = time.monotonic) -> None:
        self._size = size
        self._clock = clock
        self._frames: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._newest: tuple[float, Hashable] | None = None  # arrival time, stamp
        self._pair: tuple[float, Shot] | None = None  # arrival time, pair
        self._seen = clock()  # a new mirror counts as just seen: nothing to forget yet
        self._focus = 0.5
        self._lock = threading.Lock()

    def add_frame(self, stamp: Hashable, rgb: np.ndarray) -> None:
        """Keep a frame."""
        with self._lock:
            self._frames[stamp] = rgb
            while len(self._frames) > self._size:
                self._frames.popitem(last=False)
            self._newest = (self._clock(), stamp)

    def add_mask(self, stamp: Hashable, mask: np.ndarray) -> float | None:
        """Take a mask: pair it with its frame, note a person; return the focus or None."""
        focus = person_focus(mask)
        with self._lock:
            now = self._clock()
            if focus is not None:
                self._seen = now
                self._focus = focus
            frame = self._frames.get(stamp)
            if frame is not None and frame.shape[:2] == mask.shape[:2]:
                self._pair = (now, Shot(frame, mask, stamp, self._focus))
        return focus

    def seen(self) -> float:
        """Return when a person was last in view (clock time; at first the start)."""
        with self._lock:
            return self._seen

    def shot(self, max_age: float) -> tuple[Shot | None, str]:
        """
        Return the frame a tap dresses now, or None and the reason (a TryOn error name).

        The newest frame+mask pair when it is at most ``max_age`` seconds old (its mask
        empty: ``NO_PERSON_DETECTED``); else the newest frame alone (the server makes its
        mask); no frame that fresh: ``NO_PERSON_FRAME``.
        """
        with self._lock:
            now = self._clock()
            if self._pair is not None and now - self._pair[0] <= max_age:
                shot = self._pair[1]
                if person_focus(shot.mask) is None:
                    return None, 'NO_PERSON_DETECTED'
                return shot, ''
            if self._newest is not None and now - self._newest[0] <= max_age:
                stamp = self._newest[1]
                return Shot(self._frames[stamp], None, stamp, self._focus), ''
            return None, 'NO_PERSON_FRAME'
