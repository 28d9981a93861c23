"""
Frame sources for camera_node, without ROS: devices, GStreamer, files, folders, samples.

``open_source(spec)`` picks the kind from the spec string:

- ``sample:astronaut`` / ``sample:grace_hopper``: a bundled public-domain portrait;
- an integer (``0``) or ``/dev/videoN``: a V4L2 device;
- a string containing ``!``: a GStreamer pipeline (Jetson CSI cameras), ending in appsink;
- a folder: its images in name order;
- an image file; any other file is opened as a video.

``read()`` returns HxWx3 uint8 RGB, or None when a live source failed (the caller retries
with back-off) or a finite source ended.
"""

import os
from pathlib import Path

import cv2
import numpy as np

from vton_ros import samples

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff')


class SourceError(RuntimeError):
    """A source that cannot be opened (missing file or device, unreadable image)."""


class FrameSource:
    """Base class: ``read()`` gives the next RGB frame or None, ``close()`` frees it."""

    live = False  # a live source that fails is retried; a finite one just ends

    def read(self) -> np.ndarray | None:
        """Return the next frame (HxWx3 uint8 RGB) or None."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file."""


class StillSource(FrameSource):
    """The same image every time."""

    def __init__(self, rgb: np.ndarray) -> None:
        self._rgb = rgb

    def read(self) -> np.ndarray:
        """Return the image."""
        return self._rgb


class FolderSource(FrameSource):
    """Images of a folder in name order, optionally looping."""

    def __init__(self, folder: Path, loop: bool) -> None:
        self._files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise SourceError(f'camera source folder {folder} has no images '
                              f'({", ".join(IMAGE_SUFFIXES)})')
        self._loop = loop
        self._index = 0

    def read(self) -> np.ndarray | None:
        """Return the next image, or None at the end when not looping."""
        if self._index >= len(self._files):
            if not self._loop:
                return None
            self._index = 0
        path = self._files[self._index]
        self._index += 1
        return read_image(path)


class CaptureSource(FrameSource):
    """An OpenCV VideoCapture: V4L2 device, GStreamer pipeline or video file."""

    def __init__(self, target: int | str, backend: int, live: bool, loop: bool) -> None:
        self._target, self._backend, self.live, self._loop = target, backend, live, loop
        self._cap = cv2.VideoCapture(target, backend)
        if not self._cap.isOpened():
            self._cap.release()
            kind = 'camera' if live else 'video file'
            raise SourceError(f'cannot open {kind} {target!r} (check that it exists, is not '
                              f'in use, and that OpenCV was built with this backend)')

    def read(self) -> np.ndarray | None:
        """Return the next frame; a video file restarts at its end when looping."""
        ok, bgr = self._cap.read()
        if not ok and not self.live and self._loop:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._cap.read()
        if not ok or bgr is None:
            return None
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        """Release the capture."""
        self._cap.release()


def read_image(path: Path) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB; SourceError if it is not one."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SourceError(f'cannot read image {path}')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def open_source(spec: str, loop: bool = True) -> FrameSource:
    """Open the frame source a ``camera.source`` string names (see module docstring)."""
    spec = spec.strip()
    if not spec:
        raise SourceError('camera.source is empty: give a device index, path, pipeline, '
                          'file, folder or sample:astronaut')
    if spec.startswith('sample:'):
        try:
            return StillSource(samples.portrait(spec[len('sample:'):]))
        except ValueError as err:
            raise SourceError(str(err)) from None
    if spec.isdigit():
        return CaptureSource(int(spec), cv2.CAP_V4L2, live=True, loop=False)
    if '!' in spec:
        return CaptureSource(spec, cv2.CAP_GSTREAMER, live=True, loop=False)
    if spec.startswith('/dev/'):
        if not os.path.exists(spec):
            raise SourceError(f'camera device {spec} does not exist (ls /dev/video*)')
        return CaptureSource(spec, cv2.CAP_V4L2, live=True, loop=False)
    path = Path(spec).expanduser()
    if not path.exists():
        raise SourceError(f'camera source {spec!r} does not exist (expected a device index, '
                          '/dev/videoN, a GStreamer pipeline, a file, a folder or sample:NAME)')
    if path.is_dir():
        return FolderSource(path, loop)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return StillSource(read_image(path))
    return CaptureSource(str(path), cv2.CAP_ANY, live=False, loop=loop)


def fit(rgb: np.ndarray, width: int, height: int, mirror: bool) -> np.ndarray:
    """Resize to width x height (0 keeps the source size / aspect) and optionally mirror."""
    h, w = rgb.shape[:2]
    if width and not height:
        height = max(1, round(h * width / w))
    elif height and not width:
        width = max(1, round(w * height / h))
    if width and height and (width, height) != (w, h):
        rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    if mirror:
        rgb = rgb[:, ::-1]
    return np.ascontiguousarray(rgb)
