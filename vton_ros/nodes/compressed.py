"""
An image topic with its ``<topic>/compressed`` twin, as image_transport's compressed plugin.

An :class:`ImageTopic` publishes the raw Image and sends a sensor_msgs/CompressedImage
(JPEG or PNG, see :mod:`vton_ros.media.image_codec`) only while the compressed topic has a
subscriber, so nobody pays for encoding that nobody watches. A
latched (transient_local) twin keeps the newest raw image while nobody listens and sends
it once a viewer subscribes, so a late viewer still gets the last result.
"""

import threading

from sensor_msgs.msg import CompressedImage, Image

from vton_ros.media import image_codec
from vton_ros.nodes import image_conv

LATCH_POLL = 0.5  # seconds between checks for a viewer of a latched topic


class ImageTopic:
    """Publishes ``<topic>`` and ``<topic>/compressed`` for a managed node (in configure)."""

    def __init__(self, node, topic: str, qos, fmt: str, latched: bool = False) -> None:
        self._node, self._fmt, self._latched = node, fmt, latched
        self._raw = node.publisher(Image, topic, qos)
        self._name = f'{topic}/compressed'
        self._pub = node.publisher(CompressedImage, self._name, qos)
        self._lock = threading.Lock()
        self._pending: Image | None = None
        self._sent = 0
        if latched:
            node.timer(LATCH_POLL, self._flush)

    def publish(self, msg: Image) -> None:
        """Send ``msg``; compressed if someone subscribes (latched: else kept for later)."""
        self._raw.publish(msg)
        if self._pub.get_subscription_count() == 0:
            if self._latched:
                with self._lock:
                    self._pending = msg
            return
        with self._lock:
            self._pending = None
        self._send(msg)

    def _flush(self) -> None:
        with self._lock:
            msg = self._pending
            if msg is None or self._pub.get_subscription_count() == 0:
                return
            self._pending = None
        self._send(msg)

    def _send(self, msg: Image) -> None:
        try:
            fmt, data = image_codec.encode(
                image_conv.image_to_array(msg), msg.encoding, self._fmt,
                self._node.setting('compressed.jpeg_quality'),
                self._node.setting('compressed.png_level'))
        except ValueError as err:  # e.g. an encoding the codec does not take: skip it
            self._node.get_logger().warning(f'{self._name}: {err}', throttle_duration_sec=5.0)
            return
        self._pub.publish(CompressedImage(header=msg.header, format=fmt, data=data))
        self._sent += 1
        self._node.diag.update(**{f'{self._name} sent': self._sent})
