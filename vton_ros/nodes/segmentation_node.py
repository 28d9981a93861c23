"""
segmentation_node: agnostic masks for the latest camera frame.

The subscription callback only stores the newest frame in a one-slot buffer; a frame
worker takes it at the node's rate and hands the frames due for a mask to a pose worker
(again one slot: stale frames are dropped, counted in /diagnostics), which runs the mask
generator and publishes ``agnostic_mask`` (mono8, the frame's header; >= 128 repaint, the
rest of the person marked for framing: pipeline.framing.PERSON_LEVEL) and
``mask_overlay`` (rgb8; ``mask_overlay/compressed`` as lossless PNG while someone
subscribes). With ``live.enabled``
it also keeps the last try-on on the moving shopper (``tryon/live``, :mod:`.live`): while
a try-on is followed, frames are taken at ``live.max_rate`` for the composite, and only
those due at ``segmentation.max_rate`` are posed and publish the mask and the overlay. The
frames between (``live.between``) are registered on the last posed frame (``register``, the
default; a frame that does not register is posed), posed (``pose``) or posed by a second
mediapipe graph in its tracking (video) mode (``track``); the published masks are always
detected per image. The two workers run side by side (mediapipe releases the GIL), so a
frame between masks is registered and shown while the frame before it is still posed,
instead of waiting behind it (a composite older than one shown already is not published).
"""

import threading
import time
from typing import Callable

import numpy as np
from sensor_msgs.msg import Image

from vton_ros.nodes import common, image_conv, managed
from vton_ros.nodes.compressed import ImageTopic
from vton_ros.nodes.live import LiveTopic
from vton_ros.pipeline.masks import (create_mask_generator, MaskGenerator, MaskResult,
                                     overlay_mask, PoseMaskGenerator)


# The share of a rate's period that must pass before the next frame or mask: a camera at
# just that rate sends a frame a little early now and then, and waiting a full period
# dropped it (or delayed it until the next one replaced it).
PERIOD_SHARE = 0.9


class SegmentationNode(managed.ManagedNode):
    """Turns ``image_raw`` into ``agnostic_mask`` and ``mask_overlay`` while active."""

    def __init__(self) -> None:
        super().__init__('segmentation_node')
        self._rate = common.RateMeter()
        self._cond = threading.Condition()
        self._latest: Image | None = None
        self._dropped = 0
        self._running = False
        self._active = False
        self._generator: MaskGenerator | None = None
        self._generator_threshold = None
        self._tracker: PoseMaskGenerator | None = None  # live frames between masks
        self._pose_cond = threading.Condition()
        # the frame the pose worker masks next: (Image, rgb, masks due, intake number)
        self._to_pose: tuple[Image, np.ndarray, bool, int] | None = None
        self._workers: list[threading.Thread] = []
        self._live: LiveTopic | None = None

    def configure(self) -> None:
        """Build the mask generator, the topics and the worker."""
        start = time.monotonic()
        self._generator = self._make_generator()
        backend = self.setting('segmentation.backend')
        if backend == 'pose':  # mediapipe on the CPU whatever segmentation.device says
            device = 'cpu (mediapipe)'
        else:  # torch is imported for the unet backend only
            from vton_ros.pipeline.device import resolve_device
            device = str(resolve_device(self.setting('segmentation.device')))
        self.get_logger().info(f'mask generator {backend} ready on {device} in '
                               f'{time.monotonic() - start:.2f} s')
        self.diag.update(backend=backend, device=device)
        qos = self.image_qos()
        self._mask_pub = self.publisher(Image, 'agnostic_mask', qos)
        self._overlay_pub = ImageTopic(self, 'mask_overlay', common.LATCHED_QOS, 'png',
                                       latched=True)
        self._live = LiveTopic(self, qos)
        self.subscription(Image, 'image_raw', self.image_callback, qos)
        self._running = True
        self._workers = [threading.Thread(target=self._work, name='frames', daemon=True),
                         threading.Thread(target=self._pose_work, name='poses', daemon=True)]
        for worker in self._workers:
            worker.start()

    def activate(self) -> None:
        """Mask the frames that arrive from now on."""
        self._active = True

    def deactivate(self, final: bool = False) -> None:
        """Ignore frames (the one waiting is dropped)."""
        with self._cond:
            self._active = False
            self._latest = None
        with self._pose_cond:
            self._to_pose = None
        if self._live is not None:
            self._live.clear()

    def release(self) -> None:
        """Stop the workers and free the mask generator."""
        for cond in (self._cond, self._pose_cond):
            with cond:
                self._running = False
                cond.notify()
        for worker in self._workers:
            worker.join(10.0)
        self._workers = []
        self._drop_tracker()
        if self._generator is not None:
            self._generator.close()
            self._generator = None

    def _make_generator(self) -> MaskGenerator:
        threshold = self.setting('segmentation.threshold')
        generator = create_mask_generator(
            backend=self.setting('segmentation.backend'),
            checkpoint=self.setting('segmentation.checkpoint') or None,
            threshold=threshold, device=self.setting('segmentation.device'),
            precision=self.setting('segmentation.precision'))
        if self._generator is not None:  # replace only once the new one exists
            self._generator.close()
        self._drop_tracker()
        self._generator_threshold = threshold
        return generator

    def _masker_for(self, publish: bool) -> MaskGenerator:
        """Return the masker of this frame: the tracking one for a live frame between masks."""
        generator = self._generator
        if publish or not isinstance(generator, PoseMaskGenerator) or \
                self.setting('live.between') != 'track':
            return generator  # the published masks: detected on each image
        if self._tracker is None:  # kept: mediapipe detects again when it loses the pose
            self._tracker = PoseMaskGenerator(generator.config, tracking=True)
        return self._tracker

    def _drop_tracker(self) -> None:
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None

    def image_callback(self, msg: Image) -> None:
        """Keep only the newest frame; the worker picks it up."""
        with self._cond:
            if not self._active:
                return
            if self._latest is not None:
                self._dropped += 1
            self._latest = msg
            self._cond.notify()

    def _rates(self) -> tuple[float, float]:
        """Return (frames per second, masks per second); 0 = no limit."""
        masks = self.setting('segmentation.max_rate')
        if self._live is None or not self._live.following:
            return masks, masks
        frames = self.setting('live.max_rate')  # the live composite follows the camera
        return (0.0 if 0.0 in (frames, masks) else max(frames, masks)), masks

    def _wait(self, cond: threading.Condition, ready: Callable[[], bool]) -> bool:
        """Wait on ``cond`` (held) until ``ready()``; False when the node stops instead."""
        while self._running and not ready():
            cond.wait(0.5)
        return self._running

    def _work(self) -> None:
        last = last_mask = 0.0
        number = 0
        while True:
            with self._cond:
                if not self._wait(self._cond, lambda: self._latest is not None):
                    return
                max_rate, mask_rate = self._rates()
                wait = (last + PERIOD_SHARE / max_rate - time.monotonic()) \
                    if max_rate > 0 else 0.0
                if wait > 0:
                    self._cond.wait(wait)  # a newer frame may replace this one meanwhile
                    continue
                msg, self._latest = self._latest, None
            last = time.monotonic()
            # masks and overlays at their own rate; the frames between only feed tryon/live
            publish = mask_rate <= 0 or last - last_mask >= PERIOD_SHARE / mask_rate
            if publish:
                last_mask = last
            number += 1
            self._take(msg, publish, number)

    def _take(self, msg: Image, publish: bool, number: int) -> None:
        """Show a frame between masks on tryon/live if it registers, else have it posed."""
        start = time.monotonic()
        try:
            rgb = image_conv.to_rgb(msg)
        except ValueError as err:  # bad frame: skip it, keep running
            self._bad_frame(err)
            return
        try:
            if not publish and self._live.between(rgb, msg, number):  # moved from the last
                self._rate.tick(time.monotonic() - start)
                return
        except Exception as err:  # noqa: B902 - worker boundary: posed instead
            self._live_failed(err)
        with self._pose_cond:
            lost = self._to_pose is not None
            self._to_pose = (msg, rgb, publish, number)
            self._pose_cond.notify()
        if lost:  # the pose worker was still busy with an older frame
            with self._cond:
                self._dropped += 1

    def _pose_work(self) -> None:
        while True:
            with self._pose_cond:
                if not self._wait(self._pose_cond, lambda: self._to_pose is not None):
                    return
                job, self._to_pose = self._to_pose, None
            self._process(*job)

    def _process(self, msg: Image, rgb: np.ndarray, publish: bool, number: int) -> None:
        start = time.monotonic()
        try:
            if self.setting('segmentation.threshold') != self._generator_threshold:
                self._generator = self._make_generator()
            result = self._masker_for(publish)(rgb, self.setting('segmentation.cloth_type'))
        except ValueError as err:  # bad frame: skip it, keep running
            self._bad_frame(err)
            return
        except Exception as err:  # noqa: B902 - worker boundary: the node keeps masking
            self.get_logger().error(f'mask generation failed: {err!r}',
                                    throttle_duration_sec=5.0)
            self.diag.update('error', 'mask generation failed', last_error=repr(err))
            return
        if publish:
            self._mask_pub.publish(image_conv.from_mono(result.marked_mask(), msg.header))
            self._overlay_pub.publish(image_conv.from_rgb(overlay_mask(rgb, result.mask),
                                                          msg.header))
        try:
            self._live.process(rgb, msg, result, self._mask_again, number)
        except Exception as err:  # noqa: B902 - worker boundary: masks go on without live
            self._live_failed(err)
        self._rate.tick(time.monotonic() - start)
        self.diag.update('ok' if result.person_found else 'warn', result.status,
                         rate_hz=self._rate.rate(), latency_s=self._rate.latency(),
                         dropped_frames=self._dropped, person_found=result.person_found)

    def _bad_frame(self, err: ValueError) -> None:
        """Say that a frame was skipped (the workers go on)."""
        self.get_logger().warning(f'skipped frame: {err}', throttle_duration_sec=5.0)
        self.diag.update('warn', 'bad frame skipped', last_error=str(err))

    def _live_failed(self, err: Exception) -> None:
        """Say that live follow failed on a frame (masks go on)."""
        self.get_logger().error(f'live follow failed: {err!r}', throttle_duration_sec=5.0)
        self.diag.update('error', 'live follow failed', last_error=repr(err))

    def _mask_again(self, rgb: np.ndarray) -> MaskResult:
        """Mask another image (a try-on result whose frame is no longer kept)."""
        return self._generator(rgb, self.setting('segmentation.cloth_type'))


def main(args: list[str] | None = None) -> None:
    """Run segmentation_node."""
    common.run(SegmentationNode, args, start=SegmentationNode.start_up)


if __name__ == '__main__':
    main()
