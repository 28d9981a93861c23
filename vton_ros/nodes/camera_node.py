"""
camera_node: publishes ``image_raw`` and ``camera_info`` from a camera, video or image.

``image_raw/compressed`` (JPEG) goes out while someone subscribes to it.
camera_info carries a pinhole model: the camera.calibration_file (camera_info_manager
YAML) scaled to the published size, or an ideal pinhole of camera.hfov_deg.

A live camera that fails is reopened with exponential back-off (up to camera.max_backoff
seconds); the node reports it in its log and on /diagnostics instead of exiting.
"""

import threading
import time

from sensor_msgs.msg import CameraInfo

from vton_ros.media.camera_source import (Calibration, fit, FrameSource, load_calibration,
                                          open_source, pinhole, SourceError)
from vton_ros.nodes import common, image_conv, managed
from vton_ros.nodes.compressed import ImageTopic


class CameraNode(managed.ManagedNode):
    """Publishes frames of ``camera.source`` at ``camera.fps`` while active."""

    def __init__(self) -> None:
        super().__init__('camera_node')
        self._rate = common.RateMeter()
        self._source: FrameSource | None = None
        self._live = False
        self._backoff = 0.5
        self._next_attempt = 0.0
        self._frames = 0
        self._reconnects = 0
        self._ended = False
        self._calibration: Calibration | None = None
        self._info: tuple[Calibration, CameraInfo] | None = None
        self._timer = None
        self._capture_lock = threading.RLock()  # a frame in flight ends before deactivate
        self._on_change.append(self._settings_changed)

    def configure(self) -> None:
        """Load the calibration, open the source (a missing one: clear error), publishers."""
        calibration_file = self.setting('camera.calibration_file')
        self._calibration = load_calibration(calibration_file) if calibration_file else None
        spec = self.setting('camera.source')
        self._source = open_source(spec, self.setting('camera.loop'))
        self._live, self._ended, self._info = self._source.live, False, None
        qos = self.image_qos()
        self._image_pub = ImageTopic(self, 'image_raw', qos, 'jpeg')
        self._info_pub = self.publisher(CameraInfo, 'camera_info', qos)
        self.diag.update(source=spec)
        self.get_logger().info(f'camera source {spec!r} open, {self.setting("camera.fps")} Hz')

    def activate(self) -> None:
        """Start capturing at camera.fps."""
        self._timer = self.create_timer(1.0 / self.setting('camera.fps'), self.timer_callback)

    def deactivate(self, final: bool = False) -> None:
        """Stop capturing (the source stays open until cleanup); waits for a frame in flight."""
        with self._capture_lock:
            if self._timer is not None:
                self.destroy_timer(self._timer)
                self._timer = None

    def release(self) -> None:
        """Close the source."""
        if self._source is not None:
            self._source.close()
            self._source = None

    def _settings_changed(self, changes: dict) -> None:
        if 'camera.fps' in changes and self._timer is not None:
            self.deactivate()
            self.activate()

    def timer_callback(self) -> None:
        """Read one frame and publish it, unless capture stopped meanwhile (deactivate)."""
        with self._capture_lock:
            if self._timer is not None:
                self._capture()

    def _capture(self) -> None:
        """Read one frame and publish it, or handle a failed/ended source."""
        if self._ended:
            return
        if self._source is None and not self._reopen():
            return
        start = time.monotonic()
        rgb = self._source.read()
        if rgb is None:
            self._source_failed()
            return
        self._backoff = 0.5
        frame = fit(rgb, self.setting('camera.width'), self.setting('camera.height'),
                    self.setting('camera.mirror'))
        image = image_conv.from_rgb(frame, encoding=self.setting('camera.encoding'))
        image.header.stamp = self.get_clock().now().to_msg()
        image.header.frame_id = self.setting('camera.frame_id')
        info = self._camera_info(image.width, image.height)
        info.header = image.header
        self._image_pub.publish(image)
        self._info_pub.publish(info)
        self._frames += 1
        self._rate.tick(time.monotonic() - start)
        self.diag.update(rate_hz=self._rate.rate(), read_latency_s=self._rate.latency(),
                         frames=self._frames, width=image.width, height=image.height)

    def _camera_info(self, width: int, height: int) -> CameraInfo:
        """camera_info for this size: the calibration file scaled, or the hfov pinhole."""
        if self._calibration is not None:
            model = self._calibration.fit(width, height, self.setting('camera.mirror'))
        else:
            model = pinhole(width, height, self.setting('camera.hfov_deg'))
        if self._info is None or self._info[0] != model:
            self._info = (model, to_camera_info(model))
        return self._info[1]

    def _source_failed(self) -> None:
        if not self._live:
            self._ended = True
            self.get_logger().info('camera source ended (camera.loop is false)')
            self.diag.update('warn', 'source ended')
            return
        self._source.close()
        self._source = None
        self._next_attempt = time.monotonic() + self._backoff
        self.get_logger().error(f'camera read failed; reopening in {self._backoff:.1f} s')
        self.diag.update('error', 'camera read failed, reconnecting',
                         last_error='read failed', reconnects=self._reconnects)

    def _reopen(self) -> bool:
        if time.monotonic() < self._next_attempt:
            return False
        self._reconnects += 1
        try:
            self._source = open_source(self.setting('camera.source'), self.setting('camera.loop'))
        except SourceError as err:
            self._backoff = min(self._backoff * 2, self.setting('camera.max_backoff'))
            self._next_attempt = time.monotonic() + self._backoff
            self.get_logger().error(f'{err}; retrying in {self._backoff:.1f} s',
                                    throttle_duration_sec=5.0)
            self.diag.update('error', 'camera unavailable, retrying', last_error=str(err),
                             reconnects=self._reconnects)
            return False
        self.get_logger().info('camera reopened')
        self.diag.update('ok', 'camera reopened', reconnects=self._reconnects)
        return True


def to_camera_info(model: Calibration) -> CameraInfo:
    """Fill a CameraInfo (no header) from a pinhole model."""
    return CameraInfo(width=model.width, height=model.height,
                      distortion_model=model.distortion_model, d=list(model.d),
                      k=list(model.k), r=list(model.r), p=list(model.p))


def main(args: list[str] | None = None) -> None:
    """Run camera_node."""
    common.run(CameraNode, args, start=CameraNode.start_up)


if __name__ == '__main__':
    main()
