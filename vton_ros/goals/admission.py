"""
Goal admission for tryon_server, without ROS: validate, then run, queue, preempt or refuse.

A goal is checked completely (images, mask size, cloth type, garment id, steps, guidance,
seed) before it may touch the running or waiting goals: an invalid goal is accepted only to
be aborted at once with its error code, and never preempts a goal nor takes a queue slot.
The node decodes the goal's image messages (:mod:`vton_ros.nodes.tryon_goal`): admission
sees a :class:`PlainGoal` of arrays and plain values.
:class:`Admission` keeps the bookkeeping (which goal runs, which wait, and why a goal must
stop: cancel, preemption, time limit or shutdown). Goals are opaque hashable keys with a
handle that the node executes; error codes are names of ``TryOn.Result`` constants.
"""

from collections import deque, OrderedDict
from dataclasses import dataclass, replace
import math
import random
import threading
from typing import Any, Hashable

import numpy as np

from vton_ros.goals.strings import check_id, escape
from vton_ros.media.garments import GarmentCatalog
from vton_ros.media.image_files import SourceError
from vton_ros.settings.choices import CLOTH_TYPES
from vton_ros.settings.views import CatVTONCall

ENDED_KEPT = 1024  # finished goal ids remembered, so a late cancel is refused
# Why a goal stopped -> (error code name, message for the client).
STOPS = {
    'canceled': ('CANCELED', 'canceled'),
    'preempted': ('PREEMPTED', 'preempted by a newer goal'),
    'timed_out': ('TIMED_OUT', 'took longer than tryon.goal_timeout'),
    'shutting_down': ('SHUTTING_DOWN', 'the server is shutting down'),
    'deactivated': ('SHUTTING_DOWN', 'the server was deactivated (lifecycle)'),
    'inactive': ('SHUTTING_DOWN', 'the server is not active (lifecycle: configure, activate)'),
    'client_gone': ('CLIENT_GONE', 'the client left the ROS graph before the result'),
}


class GoalError(Exception):
    """Ends a goal with an error code (a ``TryOn.Result`` constant name) and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Request:
    """A validated goal: decoded images (uint8 RGB HxWx3, masks HxW) and its call config."""

    garment: np.ndarray
    garment_name: str  # the garment id, or 'image'
    cloth_type: str
    person: np.ndarray | None  # None: use the latest camera frame
    mask: np.ndarray | None  # None: the camera's mask or a generated one
    call: CatVTONCall  # the server's, with the goal's steps, guidance and a resolved seed
    random_seed: bool = False  # neither the goal nor the server fixed the seed


@dataclass(frozen=True, eq=False)
class PlainGoal:
    """
    A TryOn goal's fields, its images decoded by the node (uint8 RGB HxWx3, mask HxW).

    An image is None when not given, or the GoalError its decoding ended with: raised when
    :func:`validate` reaches it, so the checks keep their order.
    """

    garment_image: np.ndarray | GoalError | None
    garment_id: str
    cloth_type: str
    person_image: np.ndarray | GoalError | None
    mask: np.ndarray | GoalError | None
    num_inference_steps: int
    guidance_scale: float
    seed: int


def validate(goal: PlainGoal, call: CatVTONCall, catalog: GarmentCatalog | None, *,
             min_side: int, max_aspect: float, cloth_type: str) -> Request:
    """
    Check a goal against the server's call config; raise GoalError with the fix.

    min_side, max_aspect: tryon.min_image_side, tryon.max_aspect_ratio (for catalogue
    garments; the node checked the goal's images); cloth_type: the default
    (segmentation.cloth_type).
    """
    for name in ('garment_id', 'cloth_type'):  # bounded and inert before anything else
        try:
            check_id(name, getattr(goal, name))
        except ValueError as err:
            raise GoalError('INVALID_ARGUMENT', str(err)) from None
    garment, catalog_type = _garment(goal, catalog, min_side, max_aspect)
    cloth_type = goal.cloth_type or catalog_type or cloth_type
    if cloth_type not in CLOTH_TYPES:
        raise GoalError('INVALID_ARGUMENT', f'unknown cloth_type {goal.cloth_type!r}; '
                        f'valid: {", ".join(CLOTH_TYPES)}')
    person = _given(goal.person_image)
    mask = _given(goal.mask)
    if mask is not None:
        if person is not None:
            check_mask(mask, person.shape[:2])
        if not (mask >= 128).any():
            raise GoalError('INVALID_IMAGE', 'mask is empty: nothing to repaint')
    return Request(garment=garment, garment_name=_garment_name(goal),
                   cloth_type=cloth_type, person=person, mask=mask,
                   call=_goal_call(goal, call), random_seed=goal.seed < 0 and call.seed < 0)


def describe(goal: PlainGoal, checked: 'Request | GoalError') -> str:
    """One-line summary of a goal for logs: garment, cloth type, steps."""
    if isinstance(checked, Request):
        return (f'garment {checked.garment_name}, {checked.cloth_type}, '
                f'{checked.call.num_inference_steps} steps')
    steps = goal.num_inference_steps or 'default'  # the strings may be anything: inert
    return (f'garment {escape(_garment_name(goal)) or "-"}, '
            f'{escape(goal.cloth_type) or "-"}, {steps} steps')


def check_size(width: int, height: int, min_side: int, max_aspect: float) -> None:
    """Raise ValueError for an image too small (tryon.min_image_side) or too elongated."""
    if min(width, height) < min_side:
        raise ValueError(f'image {width}x{height} is too small: both sides must be at least '
                         f'{min_side} pixels (tryon.min_image_side)')
    if max(width, height) > max_aspect * min(width, height):
        raise ValueError(f'image {width}x{height} is too elongated: the long side may be at '
                         f'most {max_aspect:g} times the short one (tryon.max_aspect_ratio)')


def check_mask(mask: np.ndarray, size: tuple[int, int]) -> None:
    """Raise INVALID_IMAGE unless the mask (HxW) has the person image's (height, width)."""
    if mask.shape != tuple(size):
        raise GoalError('INVALID_IMAGE', f'mask is {mask.shape[1]}x{mask.shape[0]} but the '
                        f'person image is {size[1]}x{size[0]}')


def _garment_name(goal: PlainGoal) -> str:
    """Return the goal's garment id, or 'image' for a garment sent as an image."""
    return goal.garment_id if goal.garment_image is None else 'image'


def _given(image: np.ndarray | GoalError | None) -> np.ndarray | None:
    """Return a decoded image (None: not given); raise the error its decoding ended with."""
    if isinstance(image, GoalError):
        raise image
    return image


def _garment(goal: PlainGoal, catalog: GarmentCatalog | None, min_side: int,
             max_aspect: float) -> tuple[np.ndarray, str | None]:
    if goal.garment_image is not None:
        return _given(goal.garment_image), None
    if not goal.garment_id:
        raise GoalError('INVALID_ARGUMENT', 'no garment: set garment_image or garment_id')
    if catalog is None:
        raise GoalError('UNKNOWN_GARMENT', f'garment_id {goal.garment_id!r} given but no '
                        'catalogue is configured (garments.catalog_dir)')
    try:
        garment, kind = catalog.load(goal.garment_id)
        check_size(garment.shape[1], garment.shape[0], min_side, max_aspect)
        return garment, kind
    except KeyError as err:
        raise GoalError('UNKNOWN_GARMENT', err.args[0]) from None
    except (ValueError, OSError, SourceError) as err:
        raise GoalError('INVALID_IMAGE', f'garment {goal.garment_id}: {err}') from None


def _goal_call(goal: PlainGoal, call: CatVTONCall) -> CatVTONCall:
    """Apply the goal's overrides (0 / negative: the server's) to the server's call config."""
    guidance = goal.guidance_scale
    seed = goal.seed if goal.seed >= 0 else call.seed
    if seed < 0:
        seed = random.SystemRandom().randrange(2 ** 31)
    try:
        if math.isnan(guidance):
            raise ValueError(f'catvton.guidance_scale={guidance} is not a number')
        return replace(call, num_inference_steps=goal.num_inference_steps or
                       call.num_inference_steps,
                       guidance_scale=float(guidance) if guidance >= 0 else call.guidance_scale,
                       seed=int(seed))
    except ValueError as err:  # the schema's range of the setting it overrides
        raise GoalError('INVALID_ARGUMENT', f"{err} (the goal's num_inference_steps, "
                        'guidance_scale and seed override those settings; steps 0, a negative '
                        "guidance or seed keep the server's)") from None


class Admission:
    """
    Which goal runs, which wait and why a goal must stop; thread-safe.

    One valid goal runs at a time. ``busy_policy`` decides what a valid goal arriving
    meanwhile does: ``reject`` refuses it, ``queue`` keeps up to ``queue_size`` waiting,
    ``preempt`` stops the running and waiting goals and runs the newest next. Methods that
    return handles leave executing them to the caller (outside the lock).
    """

    def __init__(self, closed: str | None = None) -> None:
        """Start open, or ``closed`` for that reason (a key of STOPS) until :meth:`reopen`."""
        self._cond = threading.Condition()
        self._active: Hashable | None = None
        self._pending = 0  # offered and accepted, not yet handed to accepted()
        self._queue: deque = deque()  # (key, handle) waiting their turn
        self._live: set = set()  # accepted and not finished
        self._ended: OrderedDict = OrderedDict()  # the last ENDED_KEPT finished keys
        self._stops: dict = {}  # key -> reason (a key of STOPS)
        self._canceled: set = set()  # cancel accepted: the goal must end canceled
        self._deadlines: dict = {}  # key -> (monotonic deadline, timeout)
        self._closed = closed  # why no goal gets in (a key of STOPS), or None

    def offer(self, valid: bool, policy: str, queue_size: int) -> str | None:
        """Return why a new goal is refused, or None to accept it (a valid one is reserved)."""
        with self._cond:
            if self._closed:
                return STOPS[self._closed][1]
            if not valid:
                return None
            busy = self._active is not None or self._pending > 0
            if busy and policy == 'reject':
                return 'busy (tryon.busy_policy reject)'
            # on an idle server one of the goals offered but not yet accepted will run
            waiting = len(self._queue) + self._pending - (self._active is None)
            if busy and policy == 'queue' and waiting >= queue_size:
                return f'queue full (tryon.queue_size {queue_size})'
            self._pending += 1
            return None

    def accepted(self, key: Hashable, handle: Any, valid: bool, policy: str) -> list:
        """Register an accepted goal; return the handles to execute now."""
        with self._cond:
            self._live.add(key)
            if not valid:  # aborted at once, outside the run/queue order
                return [handle]
            self._pending -= 1
            if self._closed:
                self._stops[key] = self._closed
                return [handle]
            if self._active is None:
                self._active = key
                return [handle]
            stopped = []
            if policy == 'preempt':
                self._stops.setdefault(self._active, 'preempted')
                for waiting in self._queue:
                    self._stops.setdefault(waiting[0], 'preempted')
                stopped = [h for _, h in self._queue]
                self._queue.clear()
            self._queue.append((key, handle))
            return stopped

    def started(self, key: Hashable, now: float, timeout: float) -> None:
        """Start the time limit of a goal that begins running (0 = none)."""
        if timeout > 0:
            with self._cond:
                self._deadlines[key] = (now + timeout, timeout)

    def cancel(self, key: Hashable) -> tuple[bool, Any]:
        """Record a cancel request: (accepted?, handle to execute now if it was waiting)."""
        with self._cond:
            if key in self._ended:
                return False, None  # already finished: it keeps its result
            # live, or accepted by the action server but not yet handed to accepted() (the
            # client may cancel as soon as the acceptance arrives): it ends canceled
            self._canceled.add(key)
            return True, self._unqueue(key)

    def abandon(self, key: Hashable) -> tuple[bool, Any]:
        """Stop a goal whose client is gone: (still live?, handle to execute now if waiting)."""
        with self._cond:
            if key not in self._live:
                return False, None
            self._stops.setdefault(key, 'client_gone')
            return True, self._unqueue(key)

    def _unqueue(self, key: Hashable) -> Any:
        """Take a waiting goal out of the queue; return its handle (None if not waiting)."""
        for i, (waiting, handle) in enumerate(self._queue):
            if waiting == key:
                del self._queue[i]
                return handle
        return None

    def stop_error(self, key: Hashable, now: float) -> GoalError | None:
        """Return why the goal must stop now (code and message), or None to go on."""
        with self._cond:
            deadline = self._deadlines.get(key)
            if deadline is not None and now >= deadline[0]:
                self._stops.setdefault(key, 'timed_out')
            reason = 'canceled' if key in self._canceled else self._stops.get(key)
            if reason is None:
                return None
            code, message = STOPS[reason]
            if reason == 'timed_out':
                message += f' ({deadline[1]:g} s)'
            return GoalError(code, message)

    def finish(self, key: Hashable) -> tuple[bool, Any]:
        """Mark a goal finished: (was its cancel accepted?, handle of the next goal or None)."""
        with self._cond:
            self._live.discard(key)
            self._ended[key] = None
            while len(self._ended) > ENDED_KEPT:
                self._ended.popitem(last=False)
            canceled = key in self._canceled
            self._canceled.discard(key)
            self._stops.pop(key, None)
            self._deadlines.pop(key, None)
            nxt = None
            if self._active == key:
                self._active = None
                if self._queue:
                    self._active, nxt = self._queue.popleft()
            self._cond.notify_all()
            return canceled, nxt

    def shutdown(self, reason: str = 'shutting_down') -> tuple[list, bool]:
        """
        Refuse new goals and stop all: (waiting handles to execute now, any goal left?).

        ``reason`` (a key of STOPS) is what refused and stopped goals are told; the
        lifecycle's deactivate closes with 'deactivated' and :meth:`reopen` opens again.
        """
        with self._cond:
            self._closed = reason
            for key in self._live:
                self._stops.setdefault(key, reason)
            waiting = [h for _, h in self._queue]
            self._queue.clear()
            return waiting, bool(self._live or self._pending)

    def reopen(self) -> None:
        """Accept goals again (the lifecycle's activate); never after a shutdown."""
        with self._cond:
            if self._closed != 'shutting_down':
                self._closed = None

    def idle(self) -> bool:
        """Tell whether no goal is accepted, offered, waiting or running."""
        with self._cond:
            return not self._live and not self._pending and self._active is None

    def load(self) -> dict[str, int]:
        """Return the goals running (``busy``: 0 or 1) and waiting (``queue_depth``) now."""
        with self._cond:
            return {'busy': int(self._active is not None), 'queue_depth': len(self._queue)}

    def wait_idle(self, timeout: float) -> bool:
        """Block until no accepted goal is left (True) or ``timeout`` seconds pass (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._live and not self._pending, timeout)
