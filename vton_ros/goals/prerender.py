"""
The instant shelf: try-ons rendered in the background before the shopper taps (no ROS).

While a person stands in front of the mirror and no client goal is accepted, waiting or
running, :class:`Prerender` renders the shelf's garments (``tryon.prerender``: ``shelf``,
the first ``tryon.prerender_shelf`` garments in the page's order; ``catalogue``, all of
them up to :data:`MAX_READY`) for one camera frame of that person, the *base* shot. It is
the lowest priority there is:

- a client goal never waits for it in admission; the render's step callback asks
  :meth:`Prerender.should_stop` after every denoising step, and a goal (or a stop) makes it
  return True, so the render ends at the next step boundary, and the goal takes the
  pipeline with :meth:`Prerender.claim` (held for the goal's whole run);
- each garment's result is kept for the base shot; all are dropped when the person leaves
  (no person for ``live.forget_after`` seconds), when the newest frame's pose cannot be
  reached from the base's by the live-follow warp
  (:func:`vton_ros.media.live_warp.match_points` with the ``live.*`` limits; then the newest
  frame becomes the base), or when the setting is turned off;
- a client goal for a ready garment with the same call settings, whose person is a camera
  frame that the warp reaches from the base (or the base frame itself), gets the kept
  result at once (:meth:`Prerender.lookup`): it shows the base frame, which live follow
  then carries to the shopper's pose.

Without landmarks (segmentation.backend unet) only the base frame itself matches. The host
(tryon_server's plumbing, :mod:`vton_ros.nodes.shelf`) supplies frames, requests, renders
and landmarks through :class:`Host`.
"""

from contextlib import contextmanager
from dataclasses import dataclass, field, replace
import logging
import threading
import time
from typing import Any, Callable, Iterator, Protocol

import numpy as np

from vton_ros.goals.admission import GoalError, Request
from vton_ros.media.live_warp import LiveConfig, match_points
from vton_ros.pipeline.options import TryOnCancelled
from vton_ros.settings.choices import check_choice, PRERENDER_MODES

_LOG = logging.getLogger(__name__)
MAX_READY = 64  # results kept at most (catalogue mode), about 1.2 MB each at 640x480
POLL = 0.25  # seconds between looks at the newest frame while nothing is to render
MOVE_CHECK = 0.5  # seconds between pose checks of the newest frame against the base
ERROR_PAUSE = 2.0  # seconds the worker rests after an unexpected error


@dataclass(frozen=True)
class ShelfConfig:
    """The prerender settings: mode, shelf size, live-follow limits, absence to forget."""

    mode: str = 'off'  # off | shelf | catalogue
    shelf: int = 6  # garments (the page's first) that shelf mode renders
    live: LiveConfig = LiveConfig()
    forget_after: float = 5.0  # seconds without a person before the results are dropped

    def __post_init__(self) -> None:
        """Validate (ValueError)."""
        check_choice('tryon.prerender', self.mode, PRERENDER_MODES)
        if self.shelf < 1 or self.forget_after < 0:
            raise ValueError(f'shelf must be >= 1 and forget_after >= 0, got {self.shelf}, '
                             f'{self.forget_after}')

    def garments(self, ids: list[str]) -> list[str]:
        """Return the garments to render, in order, from the catalogue's (the page's) ids."""
        if self.mode == 'off':
            return []
        return list(ids[:self.shelf] if self.mode == 'shelf' else ids[:MAX_READY])


@dataclass(frozen=True)
class Shot:
    """
    A camera frame with a person: the frame the background renders for.

    stamp: the frame's stamp (ns); person: HxWx3 uint8 RGB; mask: HxW uint8, the camera's
    agnostic mask (the live cloth type's); header: the frame's header, given back with a
    result; landmarks: (33, 3) pose of the frame, or None (filled in by Prerender).
    """

    stamp: int
    person: np.ndarray = field(repr=False)
    mask: np.ndarray = field(repr=False)
    header: Any = field(default=None, repr=False)
    landmarks: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Ready:
    """A background result: the try-on (HxWx3 uint8), its binary mask, notes, timings."""

    garment: str
    call: Any  # the CatVTONCall it was made with (seed included)
    cloth_type: str
    image: np.ndarray = field(repr=False)
    binary: np.ndarray = field(repr=False)
    notes: str
    timings: dict
    shot: Shot = field(repr=False)


class Host(Protocol):
    """What tryon_server gives the background worker."""

    def shelf_config(self) -> ShelfConfig:
        """Return the current settings."""

    def idle(self) -> bool:
        """Return True when no client goal is accepted, waiting or running."""

    def newest(self) -> Shot | None:
        """Return the newest fresh camera frame with a person in its mask, else None."""

    def garment_ids(self) -> list[str]:
        """Return the catalogue's garment ids in the page's order."""

    def plan(self, garment_id: str) -> Request:
        """Return the request a client goal for this garment on the camera would make."""

    def render(self, request: Request, shot: Shot, should_stop: Callable[[], bool]) -> Ready:
        """Render ``request`` on ``shot``; raise TryOnCancelled when should_stop says so."""

    def landmarks(self, rgb: np.ndarray) -> np.ndarray | None:
        """Return the (33, 3) pose of a frame, or None (no person, no pose); thread-safe."""


class Prerender:
    """The background worker and its results (thread-safe)."""

    def __init__(self, host: Host, logger: Any = _LOG,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Work for ``host``; logger: info/warning/error(str) (a node's logger)."""
        self._host, self._log, self._clock = host, logger, clock
        self._work = threading.Lock()  # the pipeline: a client goal's, or the background's
        self._lock = threading.Lock()  # the fields below
        self._ready: dict[str, Ready] = {}
        self._failed: set[str] = set()  # garments that cannot render for this base
        self._base: Shot | None = None
        self._absent_since: float | None = None
        self._checked = 0.0  # when the newest frame's pose was last compared with the base
        self._step = 0  # denoising steps of the render under way
        self._arrived: int | None = None  # that step when a client goal came
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = {'rendered': 0, 'preempted': 0, 'hits': 0, 'dropped': 0,
                      'last_preempt_steps': -1}

    # ---- the node's side -----------------------------------------------------------
    def start(self) -> None:
        """Start the worker thread (activate); a no-op if it runs."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name='prerender', daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the render at its next step and end the thread; drop the results."""
        self._stopping.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        self.drop('stopped')
        return thread is None or not thread.is_alive()

    @property
    def running(self) -> bool:
        """Whether the worker thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def goal_arrived(self) -> None:
        """Note a client goal's arrival: the render must stop at its next step boundary."""
        with self._lock:
            if self._arrived is None:
                self._arrived = self._step

    def wake(self) -> None:
        """Look again now (a goal ended, a setting changed)."""
        self._wake.set()

    @contextmanager
    def claim(self) -> Iterator[None]:
        """Hold the pipeline for a client goal: waits for the render's next step at most."""
        with self._work:
            yield
        self._wake.set()

    def lookup(self, request: Request, person: np.ndarray, stamp: int | None) -> Ready | None:
        """
        Return the kept result a client goal may have, or None (hold :meth:`claim`).

        person: the goal's frame (HxWx3); stamp: its camera stamp (ns), or None when the
        person image is not a camera frame (then nothing matches).
        """
        with self._lock:
            ready, base = self._ready.get(request.garment_name), self._base
        if ready is None or base is None or stamp is None or not _same_call(request, ready):
            return None
        if stamp != base.stamp and not (person.shape == base.person.shape
                                        and np.array_equal(person, base.person)):
            if person.shape != base.person.shape or base.landmarks is None:
                return None
            landmarks = self._host.landmarks(person)
            if landmarks is None or match_points(
                    base.landmarks, landmarks, person.shape[:2], ready.cloth_type,
                    self._host.shelf_config().live)[0] is None:
                return None
        with self._lock:
            self.stats['hits'] += 1
        return ready

    def ready(self) -> list[str]:
        """Return the garments whose results are kept."""
        with self._lock:
            return list(self._ready)

    def drop(self, why: str) -> None:
        """Forget the base shot and every result (the person left or moved, a stop)."""
        with self._lock:
            had = bool(self._ready)
            self._ready.clear()
            self._failed.clear()
            self._base = None
            if had:
                self.stats['dropped'] += 1
        if had:
            self._log.info(f'prerender: results dropped ({why})')

    # ---- the render's step callback ------------------------------------------------
    def should_stop(self) -> bool:
        """After each denoising step: True when a goal came, the node stops or is busy."""
        with self._lock:
            self._step += 1
        return self._stopping.is_set() or not self._host.idle()

    # ---- the worker ----------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                busy = self._once()
            except Exception as err:  # noqa: B902 - the worker boundary: never die
                self._log.error(f'prerender failed: {err!r}')
                self._stopping.wait(ERROR_PAUSE)
                busy = False
            if not busy:
                self._wake.wait(POLL)
                self._wake.clear()

    def _once(self) -> bool:
        """Do one piece of work; return True if there may be more at once."""
        config = self._host.shelf_config()
        if config.mode == 'off':
            self.drop('tryon.prerender off')
            return False
        if not self._host.idle():
            return False
        shot = self._host.newest()
        now = self._clock()
        if shot is None:
            self._absent_since = self._absent_since or now
            if now - self._absent_since >= config.forget_after:
                self.drop('the person left')
            return False
        self._absent_since = None
        self._follow(shot, config, now)  # no pipeline needed: a goal never waits for it
        if not self._work.acquire(blocking=False):  # a client goal has the pipeline: never
            return False  # wait for it here (a stop must not wait for a goal's end)
        try:
            if self._stopping.is_set() or not self._host.idle():
                return False
            return self._render_next(config)
        finally:
            self._work.release()

    def _follow(self, shot: Shot, config: ShelfConfig, now: float) -> None:
        """Keep the base while the newest frame's pose is reachable from it; else rebase."""
        base = self._base
        if base is not None and (shot.stamp == base.stamp or now - self._checked < MOVE_CHECK
                                 or shot.person.shape == base.person.shape
                                 and np.array_equal(shot.person, base.person)):
            return
        self._checked = now
        landmarks = self._host.landmarks(shot.person)
        if base is not None and shot.person.shape != base.person.shape:
            self.drop('the camera frame size changed')
        elif base is not None and base.landmarks is not None:
            if landmarks is None:  # no pose seen this time: leaving is the masks' to tell
                return
            reached, status = match_points(base.landmarks, landmarks, shot.person.shape[:2],
                                           _key_type(self._ready), config.live)
            if reached is not None:
                return
            self.drop(f'the person {status}')
        elif base is not None:
            if landmarks is None and base.landmarks is None and \
                    np.array_equal(shot.person, base.person):
                return
            self.drop('a new frame without a comparable pose')
        with self._lock:
            self._base = replace(shot, landmarks=landmarks)

    def _render_next(self, config: ShelfConfig) -> bool:
        with self._lock:
            base = self._base
            todo = [g for g in config.garments(self._host.garment_ids())
                    if g not in self._ready and g not in self._failed]
            self._step, self._arrived = 0, None
        if base is None or not todo:
            return False
        garment = todo[0]
        self._log.info(f'prerender: rendering {garment} for frame {base.stamp}')
        start = self._clock()
        try:
            ready = self._host.render(self._host.plan(garment), base, self.should_stop)
        except TryOnCancelled:
            self._preempted(garment)
            return False
        except GoalError as err:
            self._log.warning(f'prerender: {garment} cannot be rendered: {err}')
            with self._lock:
                self._failed.add(garment)
            return True
        with self._lock:
            if self._base is base:
                self._ready[garment] = ready
                self.stats['rendered'] += 1
            count = len(self._ready)
        self._log.info(f'prerender: {garment} ready in {self._clock() - start:.2f} s '
                       f'({count} of {count + len(todo) - 1})')
        return True

    def _preempted(self, garment: str) -> None:
        with self._lock:
            step, arrived = self._step, self._arrived
            self.stats['preempted'] += 1
            after = step - (arrived or 0)  # arrived None: the goal came before step 1
            if not self._stopping.is_set():
                self.stats['last_preempt_steps'] = after
        if self._stopping.is_set():
            self._log.info(f'prerender: {garment} stopped at step {step} (the node stops)')
        else:
            self._log.info(f'prerender: {garment} preempted at step {step}, {after} step(s) '
                           'after a client goal came')


def _same_call(request: Request, ready: Ready) -> bool:
    """Whether a goal asks for what was rendered (any seed when the goal's is random)."""
    call = replace(request.call, seed=ready.call.seed) if request.random_seed else request.call
    return call == ready.call and request.cloth_type == ready.cloth_type


def _key_type(ready: dict[str, Ready]) -> str:
    """Return the cloth type whose key points the move check needs ('overall': mixed)."""
    types = {r.cloth_type for r in ready.values()}
    return types.pop() if len(types) == 1 else 'overall' if types else 'upper'
