"""
sensor_msgs/Image <-> numpy, compatible with cv_bridge's encodings and step handling.

cv_bridge for ROS 2 is not on PyPI (the PyPI copy is ROS 1's and breaks on numpy 2), so the
conversion is done here with numpy: same encoding names, rows padded by ``step``, and
``is_bigendian`` honoured for 16-bit data. Every error is a ValueError saying what is wrong.
"""

import numpy as np
from sensor_msgs.msg import Image

from vton_ros.goals.strings import escape

# encoding -> (numpy dtype, channels)
ENCODINGS = {
    'rgb8': (np.uint8, 3), 'bgr8': (np.uint8, 3), 'rgba8': (np.uint8, 4),
    'bgra8': (np.uint8, 4), 'mono8': (np.uint8, 1), '8UC1': (np.uint8, 1),
    '8UC3': (np.uint8, 3), 'mono16': (np.uint16, 1), '16UC1': (np.uint16, 1),
}


def image_to_array(msg: Image, max_pixels: int = 2 ** 31 - 1) -> np.ndarray:
    """Return the image as HxW or HxWxC array (a copy), validating the message first."""
    if msg.encoding not in ENCODINGS:
        raise ValueError(f"unsupported image encoding '{escape(msg.encoding)}'; supported: "
                         f'{", ".join(ENCODINGS)}')
    dtype, channels = ENCODINGS[msg.encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ValueError(f'image is empty ({width}x{height})')
    if height * width > max_pixels:
        raise ValueError(f'image {width}x{height} is too large ({height * width} pixels > '
                         f'{max_pixels}); send a smaller image')
    row = width * channels * np.dtype(dtype).itemsize
    if step < row:
        raise ValueError(f'image step {step} is smaller than width*channels*bytes = {row}')
    if len(msg.data) < step * height:
        raise ValueError(f'image data has {len(msg.data)} bytes, expected step*height = '
                         f'{step * height}')
    buf = np.frombuffer(bytes(msg.data[:step * height]), np.uint8).reshape(height, step)
    pixels = buf[:, :row].copy().view(dtype)
    if np.dtype(dtype).itemsize > 1 and bool(msg.is_bigendian) != (np.little_endian is False):
        pixels = pixels.byteswap()
    shape = (height, width) if channels == 1 else (height, width, channels)
    return pixels.reshape(shape)


def array_to_image(array: np.ndarray, encoding: str, header=None) -> Image:
    """Build an Image from an HxW or HxWxC array in ``encoding`` (no colour conversion)."""
    if encoding not in ENCODINGS:
        raise ValueError(f'unsupported image encoding {encoding!r}')
    dtype, channels = ENCODINGS[encoding]
    array = np.ascontiguousarray(array)
    got = 1 if array.ndim == 2 else array.shape[2]
    if array.dtype != dtype or got != channels or array.ndim not in (2, 3):
        raise ValueError(f'array {array.shape} {array.dtype} does not fit encoding {encoding}')
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(array.shape[1] * channels * array.dtype.itemsize)
    msg.data = array.astype(array.dtype.newbyteorder('<'), copy=False).tobytes()
    return msg


def to_rgb(msg: Image, max_pixels: int = 2 ** 31 - 1) -> np.ndarray:
    """Decode a colour or mono image message to HxWx3 uint8 RGB."""
    array = image_to_array(msg, max_pixels)
    if array.dtype != np.uint8:
        raise ValueError(f'expected an 8-bit colour image, got {msg.encoding}')
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if msg.encoding in ('bgr8', 'bgra8'):
        array = array[:, :, 2::-1]
    return np.ascontiguousarray(array[:, :, :3])


def to_mono(msg: Image, max_pixels: int = 2 ** 31 - 1) -> np.ndarray:
    """Decode a mono8 mask (or any 8-bit image, using its first channel) to HxW uint8."""
    array = image_to_array(msg, max_pixels)
    if array.dtype != np.uint8:
        raise ValueError(f'expected an 8-bit mask, got {msg.encoding}')
    return array if array.ndim == 2 else np.ascontiguousarray(array[:, :, 0])


def from_rgb(rgb: np.ndarray, header=None, encoding: str = 'rgb8') -> Image:
    """Encode HxWx3 uint8 RGB as rgb8 or bgr8."""
    if encoding == 'bgr8':
        rgb = rgb[:, :, ::-1]
    return array_to_image(rgb, encoding, header)


def from_mono(mask: np.ndarray, header=None) -> Image:
    """Encode an HxW uint8 mask as mono8."""
    return array_to_image(mask, 'mono8', header)
