"""JPEG/PNG payloads in image_transport's compressed form (no ROS)."""

import cv2
import numpy as np
import pytest
from vton_ros.media import image_codec
from vton_ros.media import samples


@pytest.fixture(scope='module')
def photo():
    """Return a real portrait, 128x128 RGB."""
    return cv2.resize(samples.portrait('astronaut'), (128, 128), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8'])
def test_png_round_trip_is_exact_in_the_raw_encoding(photo, encoding):
    pixels = photo if encoding == 'rgb8' else np.ascontiguousarray(photo[:, :, ::-1])
    fmt, data = image_codec.encode(pixels, encoding, 'png', png_level=9)
    assert fmt == f'{encoding}; png compressed bgr8'
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    got_encoding, got = image_codec.decode(fmt, data)
    assert got_encoding == encoding and np.array_equal(got, pixels)
    # the payload itself is what OpenCV (image_transport's decoder) reads as BGR
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(bgr, photo[:, :, ::-1])


def test_mono_masks_stay_mono(photo):
    mask = np.where(photo[:, :, 0] > 128, 255, 0).astype(np.uint8)
    fmt, data = image_codec.encode(mask, 'mono8', 'png')
    assert fmt == 'mono8; png compressed mono8'
    encoding, got = image_codec.decode(fmt, data)
    assert encoding == 'mono8' and np.array_equal(got, mask)


def test_jpeg_quality_trades_size_for_fidelity(photo):
    sizes, errors = [], []
    for quality in (10, 95):
        fmt, data = image_codec.encode(photo, 'rgb8', 'jpeg', jpeg_quality=quality)
        assert fmt == 'rgb8; jpeg compressed bgr8' and data[:2] == b'\xff\xd8'
        _, got = image_codec.decode(fmt, data)
        sizes.append(len(data))
        errors.append(np.abs(got.astype(int) - photo).mean())
    assert sizes[0] < sizes[1] and errors[1] < errors[0] and errors[1] < 4.0
    assert errors[1] < np.abs(photo[:, :, ::-1].astype(int) - photo).mean()  # not swapped


@pytest.mark.parametrize('call,words', [
    (lambda p: image_codec.encode(p, 'rgb8', 'webp'), 'unknown compressed format'),
    (lambda p: image_codec.encode(p, 'rgba8', 'png'), 'cannot compress encoding'),
    (lambda p: image_codec.encode(p[:, :, 0], 'rgb8', 'png'), 'does not fit rgb8'),
    (lambda p: image_codec.encode(p, 'rgb8', 'jpeg', jpeg_quality=0), 'jpeg_quality'),
    (lambda p: image_codec.decode('rgb8; raw', b''), 'not an image_transport'),
    (lambda p: image_codec.decode('rgb8; png compressed bgr8', b'nope'), 'does not decode'),
])
def test_bad_input_says_what_is_wrong(photo, call, words):
    with pytest.raises(ValueError, match=words):
        call(photo)
