"""
camera_node: publishes ``image_raw`` and ``camera_info`` from a camera, video or image.

camera_info carries a pinhole model: the camera.calibration_file (camera_info_manager
YAML) scaled to the published size, or an ideal pinhole of camera.hfov_deg.

A live camera that fails is reopened with exponential back-off (up to camera.max_backoff
seconds); the node reports it in its log and on /diagnostics instead of exiting.
"""

import time

from sensor_msgs.msg import CameraInfo, Image

from vton_ros.camera_source import (Calibration, fit, FrameSource, load_calibration,
                                    open_source, pinhole, SourceError)
from vton_ros.nodes import common, image_conv


class CameraNode(common.SchemaNode):
    """Publishes frames of ``camera.source`` at ``camera.fps``."""

    def __init__(self) -> None:
        super().__init__('camera_node')
        qos = self.image_qos()
        self._image_pub = self.create_publisher(Image, 'image_raw', qos)
        self._info_pub = self.create_publisher(CameraInfo, 'camera_info', qos)
        self._diag = common.Diagnostics(self)
        self._rate = common.RateMeter()
        self._source: FrameSource | None = None
        self._backoff = 0.5
        self._next_attempt = 0.0
        self._frames = 0
        self._reconnects = 0
        self._ended = False
        calibration_file = self.setting('camera.calibration_file')
        self._calibration = load_calibration(calibration_file) if calibration_file else None
        self._info: tuple[Calibration, CameraInfo] | None = None
        spec = self.setting('camera.source')
        self._source = open_source(spec, self.setting('camera.loop'))  # missing: clear error
        self._live = self._source.live
        self._diag.update('ok', f'publishing {spec}', source=spec)
        self._timer = self.create_timer(1.0 / self.setting('camera.fps'), self.timer_callback)
        self._on_change.append(self._settings_changed)
        self.get_logger().info(f'camera source {spec!r} open, {self.setting("camera.fps")} Hz')

    def _settings_changed(self, changes: dict) -> None:
        if 'camera.fps' in changes:
            self._timer.cancel()
            self.destroy_timer(self._timer)
            self._timer = self.create_timer(1.0 / changes['camera.fps'], self.timer_callback)

    def timer_callback(self) -> None:
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
        self._diag.update(rate_hz=self._rate.rate(), read_latency_s=self._rate.latency(),
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
            self._diag.update('warn', 'source ended')
            return
        self._source.close()
        self._source = None
        self._next_attempt = time.monotonic() + self._backoff
        self.get_logger().error(f'camera read failed; reopening in {self._backoff:.1f} s')
        self._diag.update('error', 'camera read failed, reconnecting',
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
            self._diag.update('error', 'camera unavailable, retrying', last_error=str(err),
                              reconnects=self._reconnects)
            return False
        self.get_logger().info('camera reopened')
        self._diag.update('ok', 'camera reopened', reconnects=self._reconnects)
        return True

    def close(self) -> None:
        """Release the source."""
        if self._source is not None:
            self._source.close()


def to_camera_info(model: Calibration) -> CameraInfo:
    """Fill a CameraInfo (no header) from a pinhole model."""
    return CameraInfo(width=model.width, height=model.height,
                      distortion_model=model.distortion_model, d=list(model.d),
                      k=list(model.k), r=list(model.r), p=list(model.p))


def main(args: list[str] | None = None) -> None:
    """Run camera_node."""
    common.run(CameraNode, args)


if __name__ == '__main__':
    main()
