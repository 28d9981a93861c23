"""
JPEG/PNG payloads of sensor_msgs/CompressedImage in image_transport's ``compressed`` form.

image_transport's compressed plugin writes ``format`` as ``"<encoding>; <jpeg|png>
compressed <bgr8|mono8>"``: the raw topic's encoding, the codec, and the layout of the
compressed pixels (colour is stored as bgr8, as OpenCV writes it). A viewer (rqt_image_view,
image_transport republish) decodes the payload and converts back to ``<encoding>``. This
module does both directions on numpy arrays, without ROS.
"""

import cv2
import numpy as np

FORMATS = ('jpeg', 'png')
COLOUR = ('rgb8', 'bgr8')
MONO = ('mono8',)


def encode(pixels: np.ndarray, encoding: str, fmt: str, jpeg_quality: int = 80,
           png_level: int = 3) -> tuple[str, bytes]:
    """
    Compress an image; return (CompressedImage.format, data).

    pixels: HxWx3 uint8 in ``encoding`` order (rgb8 or bgr8) or HxW uint8 (mono8).
    fmt: 'jpeg' (lossy, ``jpeg_quality`` 1..100) or 'png' (lossless, ``png_level`` 0..9).
    """
    if fmt not in FORMATS:
        raise ValueError(f'unknown compressed format {fmt!r}; valid: {", ".join(FORMATS)}')
    if encoding not in COLOUR + MONO:
        raise ValueError(f'cannot compress encoding {encoding!r}; valid: '
                         f'{", ".join(COLOUR + MONO)}')
    expected = 2 if encoding in MONO else 3
    if pixels.dtype != np.uint8 or pixels.ndim != expected or \
            (expected == 3 and pixels.shape[2] != 3):
        raise ValueError(f'array {pixels.shape} {pixels.dtype} does not fit {encoding}')
    if not 1 <= jpeg_quality <= 100 or not 0 <= png_level <= 9:
        raise ValueError(f'jpeg_quality {jpeg_quality} must be in [1, 100] and png_level '
                         f'{png_level} in [0, 9]')
    target = 'mono8' if encoding in MONO else 'bgr8'
    if encoding == 'rgb8':
        pixels = pixels[:, :, ::-1]
    if fmt == 'jpeg':
        ok, data = cv2.imencode('.jpg', pixels, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    else:
        ok, data = cv2.imencode('.png', pixels, [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)])
    if not ok:
        raise ValueError(f'OpenCV could not encode a {pixels.shape} image as {fmt}')
    return f'{encoding}; {fmt} compressed {target}', data.tobytes()


def decode(format_string: str, data: bytes) -> tuple[str, np.ndarray]:
    """
    Decompress a CompressedImage as a viewer does; return (encoding, pixels).

    pixels are in the raw topic's encoding: HxWx3 for rgb8/bgr8, HxW for mono8.
    """
    encoding, _, rest = format_string.partition(';')
    encoding, words = encoding.strip(), rest.split()
    if encoding not in COLOUR + MONO or len(words) != 3 or words[0] not in FORMATS or \
            words[1] != 'compressed':
        raise ValueError(f'not an image_transport compressed format: {format_string!r}')
    flag = cv2.IMREAD_GRAYSCALE if encoding in MONO else cv2.IMREAD_COLOR
    pixels = cv2.imdecode(np.frombuffer(bytes(data), np.uint8), flag)
    if pixels is None:
        raise ValueError(f'{words[0]} data of {len(data)} bytes does not decode')
    if encoding == 'rgb8':
        pixels = np.ascontiguousarray(pixels[:, :, ::-1])
    return encoding, pixels
