"""
tryon_server's instant shelf (``tryon.prerender``): :mod:`vton_ros.goals.prerender` wired up.

The worker (:class:`vton_ros.goals.prerender.Prerender`) runs only while the node is active
(started by activate, stopped and joined by deactivate and release); it sees the camera
through the server's frame+mask pairs, the client goals through the server's admission
(a goal is never refused or queued because of it), and renders with the server's pipeline
and mask generator exactly as a client goal for a catalogue garment would. A client goal
holds :meth:`Shelf.claim` while it runs and asks :meth:`Shelf.result` for a ready garment.
"""

import time
from typing import Any, Callable

import numpy as np
from vton_interfaces.action import TryOn
from vton_interfaces.msg import StageTiming

from vton_ros.goals import tryon_job as core
from vton_ros.goals.admission import Admission, PlainGoal, Request, validate
from vton_ros.goals.prerender import Prerender, Ready, ShelfConfig, Shot
from vton_ros.media.garments import GarmentCatalog
from vton_ros.media.live_warp import LiveConfig
from vton_ros.nodes import image_conv
from vton_ros.settings.views import CatVTONCall, CatVTONLoad, MaskerConfig

NOTE = 'prerendered before the tap'


class Shelf:
    """The background renders of one configured tryon_server (see the module doc)."""

    def __init__(self, node: Any, maskers: core.Maskers, admission: Admission) -> None:
        """Wire to the node's mask generator and admission; nothing runs before start."""
        self._node, self._maskers, self._admission = node, maskers, admission
        self._pipe: Any = None
        self._catalog: GarmentCatalog | None = None
        self._pairs = core.FramePairs()
        self.prerender = Prerender(self, node.get_logger())

    def configure(self, pipe: Any, catalog: GarmentCatalog | None,
                  pairs: core.FramePairs) -> None:
        """Take the loaded pipeline, the catalogue and the camera pairs (configure)."""
        self._pipe, self._catalog, self._pairs = pipe, catalog, pairs

    # ---- the node's side -----------------------------------------------------------
    def start(self) -> None:
        """Start the worker (activate)."""
        self.prerender.start()
        self._node.diag.update(prerender='running')

    def stop(self) -> None:
        """Stop the render within a step, join the worker, drop the results."""
        running = self.prerender.running
        if not self.prerender.stop():
            self._node.get_logger().warning('prerender worker still running after 30 s')
        elif running:
            self._node.get_logger().info('prerender worker stopped')
        self._node.diag.update(prerender='stopped')

    def claim(self) -> Any:
        """Context manager: the pipeline for a client goal (the render stops within a step)."""
        return self.prerender.claim()

    def goal_arrived(self) -> None:
        """Note a client goal (for the steps-after-arrival count of a preemption)."""
        self.prerender.goal_arrived()

    def result(self, request: Request, person: np.ndarray, person_msg: Any,
               start: float) -> TryOn.Result | None:
        """
        Return the kept result for a client goal, or None to render it.

        person: the goal's person (HxWx3); person_msg: the camera frame's Image when the goal
        took the camera's pair, else None (then the person must be a kept camera frame);
        start: the goal's start (time.monotonic). The stages are 0 (no work was done for
        the goal); 'prerendered' is the background render's seconds.
        """
        if self.shelf_config().mode == 'off':
            return None
        stamp = core.stamp_ns(person_msg) if person_msg is not None else self._camera(person)
        ready = self.prerender.lookup(request, person, stamp)
        if ready is None:
            return None
        header = ready.shot.header
        timings = dict.fromkeys(ready.timings, 0.0)
        timings.update(total=time.monotonic() - start, camera_wait=0.0,
                       prerendered=ready.timings.get('total', 0.0))
        return TryOn.Result(image=image_conv.from_rgb(ready.image, header),
                            mask=image_conv.from_mono(ready.binary, header),
                            seed=ready.call.seed,
                            timings=[StageTiming(name=k, seconds=float(v))
                                     for k, v in timings.items()],
                            error_code=TryOn.Result.SUCCESS, message=f'{ready.notes}; {NOTE}')

    def _camera(self, person: np.ndarray) -> int | None:
        """Return the stamp of the kept camera frame with exactly these pixels, or None."""
        for msg in self._pairs.recent():
            if (msg.height, msg.width) == person.shape[:2]:
                try:
                    if np.array_equal(image_conv.to_rgb(msg), person):
                        return core.stamp_ns(msg)
                except ValueError:
                    continue
        return None

    # ---- the worker's host (goals.prerender.Host) -----------------------------------
    def shelf_config(self) -> ShelfConfig:
        """Return tryon.prerender, tryon.prerender_shelf and the live.* limits."""
        s = self._node.setting
        live = LiveConfig(min_visibility=s('live.min_visibility'),
                          max_displacement=s('live.max_displacement'),
                          max_scale=s('live.max_scale'), max_rotation=s('live.max_rotation'),
                          min_width_ratio=s('live.min_width_ratio'))
        return ShelfConfig(s('tryon.prerender'), s('tryon.prerender_shelf'), live,
                           s('live.forget_after'))

    def idle(self) -> bool:
        """Return True while no client goal is offered, accepted or running."""
        return self._admission.idle()

    def newest(self) -> Shot | None:
        """Return the newest fresh camera pair whose mask shows a person, else None."""
        pair = self._pairs.latest()
        age = self._pairs.age(self._node.get_clock().now().nanoseconds)
        if pair is None or age > self._node.setting('tryon.pair_max_age'):
            return None
        try:
            person, mask = image_conv.to_rgb(pair[0]), image_conv.to_mono(pair[1])
        except ValueError:
            return None
        if not (mask >= 128).any():
            return None
        return Shot(core.stamp_ns(pair[0]), person, mask, pair[0].header)

    def garment_ids(self) -> list[str]:
        """Return the catalogue's ids in the page's order (sorted)."""
        return self._catalog.ids() if self._catalog is not None else []

    def plan(self, garment_id: str) -> Request:
        """Return the request of a camera goal for ``garment_id`` (GoalError if invalid)."""
        s = self._node.setting
        goal = PlainGoal(garment_image=None, garment_id=garment_id, cloth_type='',
                         person_image=None, mask=None, num_inference_steps=0,
                         guidance_scale=-1.0, seed=-1)
        return validate(goal, self._node.config(CatVTONCall), self._catalog,
                        min_side=s('tryon.min_image_side'),
                        max_aspect=s('tryon.max_aspect_ratio'),
                        cloth_type=s('segmentation.cloth_type'))

    def render(self, request: Request, shot: Shot, should_stop: Callable[[], bool]) -> Ready:
        """Render as a camera goal would (the camera's mask or a made one); may stop."""
        start, timings = time.monotonic(), dict.fromkeys(core.STAGES, 0.0)
        mask = shot.mask if request.cloth_type == self._node.setting('segmentation.cloth_type') \
            else None
        if mask is None:
            mask, timings['segmentation'] = self._maskers(self._node.config(MaskerConfig),
                                                          shot.person, request.cloth_type)
        image, binary, notes = core.try_on(
            self._pipe, request, shot.person, mask, timings,
            lambda step, total, timestep, latents: should_stop(),
            attn_version=self._node.config(CatVTONLoad).attn_version)
        timings['total'] = time.monotonic() - start
        return Ready(request.garment_name, request.call, request.cloth_type, image, binary,
                     notes, timings, shot)

    def landmarks(self, rgb: np.ndarray) -> np.ndarray | None:
        """Return the pose of a frame from the server's mask generator (pose backend)."""
        return self._maskers.landmarks(self._node.config(MaskerConfig), rgb)
