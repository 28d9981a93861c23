"""
Live follow inside segmentation_node: ``tryon/live`` (+ ``/compressed``) and its status.

The node that owns the pose owns live follow. segmentation_node keeps the landmarks, mask
and a grey 1/4-size copy (for registration) of its last frames by stamp; a try-on result
(``tryon/result``, latched) carries the stamp of the camera frame it was made from, so its
pose and frame are looked up, not guessed (a result made from another image, e.g. an
upload, is masked once itself and followed by landmarks alone). Each new frame's mask then
comes with a composite from :class:`vton_ros.media.live_warp.LiveFollower` on
``tryon/live`` (only while the garment is on), and ``tryon/live/status`` (std_msgs/String,
latched, on change) says 'live', 'no result', 'no person', 'turned away' or 'moved too
far', so the page can say so. A frame between masks is, with ``live.between`` register,
not posed but registered on the last posed frame (:meth:`LiveTopic.between`; posed when that
fails, skipped while the last posed frame was not live); /diagnostics counts them
(``live_between_registered``, ``_posed``, ``_skipped``). No work in callbacks: the result
waits in a slot for the pose worker. Two threads of segmentation_node call in (the frame
worker: :meth:`LiveTopic.between`; the pose worker: :meth:`LiveTopic.process`), so a lock
keeps the follower whole, and a composite older than one already published (a posed frame
whose newer frames were registered meanwhile) is not published.
"""

from collections import OrderedDict
import threading
import time
from typing import Any, Callable

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import String

from vton_ros.media.live_warp import LiveConfig, LiveFollower, STATUS_NO_PERSON
from vton_ros.media.registration import small_gray
from vton_ros.nodes import common, image_conv
from vton_ros.nodes.compressed import ImageTopic

POSES_KEPT = 90  # frames whose pose a result may refer to (6 s at 15 masks per second)


def _stamp(header: Any) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


class LiveTopic:
    """tryon/live of a managed node (made in configure; fed from the mask worker)."""

    def __init__(self, node: Any, qos: Any) -> None:
        """Create the topics and the tryon/result subscription."""
        self._node = node
        self._topic = ImageTopic(node, 'tryon/live', qos, 'jpeg')
        self._status_pub = node.publisher(String, 'tryon/live/status', common.LATCHED_QOS)
        node.subscription(Image, 'tryon/result', self.result_callback, common.LATCHED_QOS)
        self._lock = threading.Lock()  # the slot and the poses (callback vs. workers)
        self._follow_lock = threading.Lock()  # the follower, status, publishing (workers)
        self._shown = -1  # the newest frame (intake number) whose composite was published
        self._pending: Image | None = None
        # stamp -> (landmarks, mask, small_gray frame: what registration matches)
        self._poses: OrderedDict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = \
            OrderedDict()
        self._follower = LiveFollower(self._config())
        self._status = ''
        self._absent_since: float | None = None
        self._warned_backend = False
        self._between = {'registered': 0, 'posed': 0, 'skipped': 0}  # frames between masks

    def _config(self) -> LiveConfig:
        s = self._node.setting
        return LiveConfig(min_visibility=s('live.min_visibility'),
                          max_displacement=s('live.max_displacement'),
                          max_scale=s('live.max_scale'), max_rotation=s('live.max_rotation'),
                          min_width_ratio=s('live.min_width_ratio'),
                          feather=s('live.feather'))

    @property
    def following(self) -> bool:
        """Whether a try-on is followed or waits to be (frames then go at live.max_rate)."""
        return bool(self._node.setting('live.enabled')) and (
            self._follower.has_result or self._pending is not None)

    def result_callback(self, msg: Image) -> None:
        """Keep the newest try-on result for the worker."""
        with self._lock:
            self._pending = msg

    def clear(self) -> None:
        """Forget the followed try-on and the kept poses (deactivate)."""
        with self._lock:
            self._pending = None
            self._poses.clear()
        with self._follow_lock:
            self._follower.clear()
            self._set_status('no result')

    def process(self, rgb: np.ndarray, msg: Image, result: Any,
                masker: Callable[[np.ndarray], Any], number: int) -> None:
        """
        Follow the try-on onto this posed frame (pose worker thread).

        rgb: the frame; msg: its Image (header); result: its MaskResult; masker: rgb ->
        MaskResult, for a try-on whose frame is no longer kept; number: the frame's intake
        number (its composite is not published after a newer frame's).
        """
        if not self._node.setting('live.enabled'):
            return
        if result.landmarks is None and result.person_found:
            if not self._warned_backend:
                self._warned_backend = True
                self._node.get_logger().warning('live follow needs segmentation.backend pose '
                                                '(landmarks); tryon/live stays silent')
            return
        small = small_gray(rgb)
        with self._follow_lock:  # first: no frame between sees the slot empty, the old result
            with self._lock:
                if result.landmarks is not None:
                    self._poses[_stamp(msg.header)] = (result.landmarks, result.mask, small)
                    while len(self._poses) > POSES_KEPT:
                        self._poses.popitem(last=False)
                pending, self._pending = self._pending, None
            if pending is not None:
                self._take_result(pending, masker)
            if self._follower.config != self._config():
                self._follower.config = self._config()
            start = time.monotonic()
            live = self._follower.follow(rgb, result.mask, result.landmarks, small)
            if live.status == STATUS_NO_PERSON:
                self._absent_since = self._absent_since or start
                if start - self._absent_since > self._node.setting('live.forget_after'):
                    self._follower.clear()
            else:
                self._absent_since = None
            self._publish(live, msg, start, number)

    def between(self, rgb: np.ndarray, msg: Image, number: int) -> bool:
        """
        Follow the try-on onto a frame without posing it (frame worker thread).

        With ``live.between`` 'register' the frame is registered on the last posed frame
        (:meth:`LiveFollower.follow_between`). Returns False when the frame must be posed
        (another live.between, a new try-on to take, no registration).
        """
        if not self._node.setting('live.enabled') or \
                self._node.setting('live.between') != 'register':
            return False
        with self._follow_lock:
            if self._pending is not None:  # a new try-on: taken by the next posed frame
                return False
            start = time.monotonic()
            try:
                live = self._follower.follow_between(rgb)
            except ValueError as err:  # e.g. another frame size: pose it
                self._node.get_logger().warning(f'live follow between poses: {err}',
                                                throttle_duration_sec=5.0)
                return False
            if live is None:
                self._count('posed')
                return False
            self._count('registered' if live.live else 'skipped')  # skipped: not live when posed
            self._publish(live, msg, start, number)
        return True

    def _count(self, how: str) -> None:
        self._between[how] += 1
        self._node.diag.update(**{f'live_between_{how}': self._between[how]})

    def _publish(self, live: Any, msg: Image, start: float, number: int) -> None:
        if live.live and number > self._shown:
            self._shown = number
            self._topic.publish(image_conv.from_rgb(live.image, msg.header))
            self._node.diag.update(live_composite_s=round(time.monotonic() - start, 4))
        self._set_status(live.status)

    def _take_result(self, msg: Image, masker: Callable[[np.ndarray], Any]) -> None:
        try:
            image = image_conv.to_rgb(msg)
            with self._lock:
                pose = self._poses.get(_stamp(msg.header))
            if pose is None or pose[1].shape != image.shape[:2]:
                own = masker(image)
                if own.landmarks is None or not own.mask.any():
                    self._node.get_logger().warning('live follow: no person in the try-on '
                                                    'result; not followed')
                    self._follower.clear()
                    return
                pose = (own.landmarks, own.mask, None)  # registration needs its frame
            self._follower.set_result(image, pose[1], pose[0],
                                      self._node.setting('segmentation.cloth_type'), pose[2])
        except ValueError as err:  # a result we cannot follow: say so, keep masking
            self._node.get_logger().warning(f'live follow: result not followed: {err}',
                                            throttle_duration_sec=5.0)
            self._follower.clear()

    def _set_status(self, status: str) -> None:
        if status != self._status:
            self._status = status
            self._status_pub.publish(String(data=status))
            self._node.diag.update(live=status)
