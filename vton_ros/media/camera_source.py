"""
Frame sources for camera_node, without ROS: devices, GStreamer, files, folders, samples.

``open_source(spec)`` picks the kind from the spec string:

- ``sample:astronaut`` / ``sample:grace_hopper``: a bundled public-domain portrait;
- an integer (``0``) or ``/dev/videoN``: a V4L2 device;
- a string containing ``!``: a GStreamer pipeline (Jetson CSI cameras), ending in appsink;
- a folder: its images in name order;
- an image file; any other file is opened as a video.

``read()`` returns HxWx3 uint8 RGB, or None when a live source failed (the caller retries
with back-off) or a finite source ended. :class:`Calibration` is the pinhole model of
camera_info: from a camera_info_manager YAML file or from a horizontal field of view.
"""

from dataclasses import dataclass, replace
import math
import os
from pathlib import Path

import cv2
import numpy as np
from vton_ros.media import samples
from vton_ros.media.image_files import IMAGE_SUFFIXES, read_image, SourceError
import yaml


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


@dataclass(frozen=True)
class Calibration:
    """A pinhole camera model as sensor_msgs/CameraInfo carries it (row-major lists)."""

    width: int
    height: int
    k: tuple[float, ...]  # 3x3 intrinsics
    p: tuple[float, ...]  # 3x4 projection
    d: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)
    r: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    distortion_model: str = 'plumb_bob'

    def fit(self, width: int, height: int, mirror: bool = False) -> 'Calibration':
        """Return the model for the image resized to width x height (and mirrored)."""
        sx, sy = width / self.width, height / self.height
        k, p = list(self.k), list(self.p)
        for m, cols in ((k, 3), (p, 4)):
            for col in range(cols):
                m[col] *= sx
                m[cols + col] *= sy
            if mirror:  # principal point reflected; fx stays positive (rviz convention)
                m[2] = (width - 1) - m[2]
        return replace(self, width=width, height=height, k=tuple(k), p=tuple(p))


def pinhole(width: int, height: int, hfov_deg: float) -> Calibration:
    """
    Ideal pinhole with square pixels for a horizontal field of view, centred.

    fx = fy = (width / 2) / tan(hfov / 2), cx = (width - 1) / 2, cy = (height - 1) / 2.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f'image size must be positive, got {width}x{height}')
    if not 0.0 < hfov_deg < 180.0:
        raise ValueError(f'horizontal field of view must be in (0, 180) degrees, got {hfov_deg}')
    f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    return Calibration(width, height, k=(f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0),
                       p=(f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0))


def load_calibration(path: str) -> Calibration:
    """Read a camera_info_manager / camera_calibration YAML file (ost.yaml)."""
    try:
        with open(Path(path).expanduser(), encoding='utf-8') as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f'camera.calibration_file {path}: cannot read it ({err}); give a '
                         'camera_calibration YAML (ost.yaml) or leave it empty') from None
    try:
        width, height = int(data['image_width']), int(data['image_height'])
        k = _matrix(data, 'camera_matrix', 3, 3)
        calibration = Calibration(width, height, k=k,
                                  p=(_matrix(data, 'projection_matrix', 3, 4)
                                     if 'projection_matrix' in data else
                                     k[:3] + (0.0,) + k[3:6] + (0.0,) + k[6:] + (0.0,)),
                                  d=_matrix(data, 'distortion_coefficients', 1, None),
                                  r=(_matrix(data, 'rectification_matrix', 3, 3)
                                     if 'rectification_matrix' in data else Calibration.r),
                                  distortion_model=str(data.get('distortion_model',
                                                                'plumb_bob')))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f'camera.calibration_file {path}: not a camera_info_manager YAML '
                         f'({type(err).__name__}: {err}); expected image_width, '
                         'image_height, camera_matrix {rows: 3, cols: 3, data: [...]}, '
                         'distortion_coefficients and projection_matrix') from None
    if width <= 0 or height <= 0 or k[0] <= 0 or k[4] <= 0:
        raise ValueError(f'camera.calibration_file {path}: image size and fx, fy must be '
                         'positive')
    return calibration


def _matrix(data: dict, key: str, rows: int, cols: int | None) -> tuple[float, ...]:
    values = tuple(float(v) for v in data[key]['data'])
    if cols is not None and len(values) != rows * cols:
        raise ValueError(f'{key} has {len(values)} values, expected {rows}x{cols}')
    return values
