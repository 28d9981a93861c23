"""
segmentation_node: agnostic masks for the latest camera frame.

The subscription callback only stores the newest frame in a one-slot buffer; a worker
thread runs the mask generator on it (stale frames are dropped, counted in /diagnostics)
and publishes ``agnostic_mask`` (mono8, the frame's header) and ``mask_overlay`` (rgb8).
"""

import threading
import time

from sensor_msgs.msg import Image

from vton_ros.nodes import common, image_conv
from vton_ros.pipeline.device import resolve_device
from vton_ros.pipeline.masks import create_mask_generator, MaskGenerator, overlay_mask


class SegmentationNode(common.SchemaNode):
    """Turns ``image_raw`` into ``agnostic_mask`` and ``mask_overlay``."""

    def __init__(self) -> None:
        super().__init__('segmentation_node')
        qos = self.image_qos()
        self._mask_pub = self.create_publisher(Image, 'agnostic_mask', qos)
        self._overlay_pub = self.create_publisher(Image, 'mask_overlay', common.LATCHED_QOS)
        self._diag = common.Diagnostics(self)
        self._rate = common.RateMeter()
        self._cond = threading.Condition()
        self._latest: Image | None = None
        self._dropped = 0
        self._running = True
        self._generator: MaskGenerator | None = None
        self._generator_threshold = None
        self._worker = threading.Thread(target=self._work, name='segmentation', daemon=True)
        self.create_subscription(Image, 'image_raw', self.image_callback, qos)

    def load(self) -> None:
        """Build the mask generator (from main, after the node exists) and start the worker."""
        start = time.monotonic()
        self._generator = self._make_generator()
        backend = self.setting('segmentation.backend')
        # the pose backend runs mediapipe on the CPU whatever segmentation.device says
        device = ('cpu (mediapipe)' if backend == 'pose' else
                  str(resolve_device(self.setting('segmentation.device'))))
        self.get_logger().info(f'mask generator {backend} ready on {device} in '
                               f'{time.monotonic() - start:.2f} s')
        self._diag.update('ok', 'waiting for frames', backend=backend, device=device)
        self._worker.start()

    def _make_generator(self) -> MaskGenerator:
        threshold = self.setting('segmentation.threshold')
        generator = create_mask_generator(
            backend=self.setting('segmentation.backend'),
            checkpoint=self.setting('segmentation.checkpoint') or None,
            threshold=threshold, device=self.setting('segmentation.device'),
            precision=self.setting('segmentation.precision'))
        if self._generator is not None:  # replace only once the new one exists
            self._generator.close()
        self._generator_threshold = threshold
        return generator

    def image_callback(self, msg: Image) -> None:
        """Keep only the newest frame; the worker picks it up."""
        with self._cond:
            if self._latest is not None:
                self._dropped += 1
            self._latest = msg
            self._cond.notify()

    def _work(self) -> None:
        last = 0.0
        while True:
            with self._cond:
                while self._running and self._latest is None:
                    self._cond.wait(0.5)
                if not self._running:
                    return
                max_rate = self.setting('segmentation.max_rate')
                wait = (last + 1.0 / max_rate - time.monotonic()) if max_rate > 0 else 0.0
                if wait > 0:
                    self._cond.wait(wait)  # a newer frame may replace this one meanwhile
                    continue
                msg, self._latest = self._latest, None
            last = time.monotonic()
            self._process(msg)

    def _process(self, msg: Image) -> None:
        start = time.monotonic()
        try:
            rgb = image_conv.to_rgb(msg)
            if self.setting('segmentation.threshold') != self._generator_threshold:
                self._generator = self._make_generator()
            result = self._generator(rgb, self.setting('segmentation.cloth_type'))
        except ValueError as err:  # bad frame: skip it, keep running
            self.get_logger().warning(f'skipped frame: {err}', throttle_duration_sec=5.0)
            self._diag.update('warn', 'bad frame skipped', last_error=str(err))
            return
        except Exception as err:  # noqa: B902 - worker boundary: the node keeps masking
            self.get_logger().error(f'mask generation failed: {err!r}',
                                    throttle_duration_sec=5.0)
            self._diag.update('error', 'mask generation failed', last_error=repr(err))
            return
        self._mask_pub.publish(image_conv.from_mono(result.mask, msg.header))
        self._overlay_pub.publish(image_conv.from_rgb(overlay_mask(rgb, result.mask),
                                                      msg.header))
        self._rate.tick(time.monotonic() - start)
        self._diag.update('ok' if result.person_found else 'warn', result.status,
                          rate_hz=self._rate.rate(), latency_s=self._rate.latency(),
                          dropped_frames=self._dropped, person_found=result.person_found)

    def close(self) -> None:
        """Stop the worker and free the mask generator."""
        with self._cond:
            self._running = False
            self._cond.notify()
        if self._worker.is_alive():
            self._worker.join(10.0)
        if self._generator is not None:
            self._generator.close()


def main(args: list[str] | None = None) -> None:
    """Run segmentation_node."""
    common.run(SegmentationNode, args, start=SegmentationNode.load)


if __name__ == '__main__':
    main()
