"""Image coding for the mirror page: JPEG frames, thumbnails, mask overlays, uploads."""

import io

import cv2
import numpy as np
from PIL import Image

MIN_SIDE = 32  # pixels: a smaller garment photo carries nothing to try on
MAX_ASPECT = 8.0  # longest side / shortest side of an uploaded photo
OVERLAY_RGBA = (0, 200, 255, 110)  # colour and alpha of the masked region in the overlay


def jpeg(rgb: np.ndarray, quality: int = 80, max_side: int = 0) -> bytes:
    """Encode an HxWx3 uint8 RGB image as JPEG, shrunk to ``max_side`` (0 = as is)."""
    rgb = shrink(rgb, max_side)
    ok, buf = cv2.imencode('.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError('JPEG encoding failed')
    return buf.tobytes()


def shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    """Return ``image`` scaled down so its longest side is at most ``max_side`` (0 = as is)."""
    height, width = image.shape[:2]
    if not max_side or max(height, width) <= max_side:
        return image
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def mask_overlay(mask: np.ndarray, max_side: int = 320) -> bytes:
    """Return a PNG (RGBA) tinting the masked pixels (>= 128) of an HxW uint8 mask."""
    mask = shrink(mask, max_side)
    rgba = np.zeros(mask.shape[:2] + (4,), np.uint8)
    rgba[mask >= 128] = OVERLAY_RGBA
    ok, buf = cv2.imencode('.png', cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    if not ok:
        raise ValueError('PNG encoding failed')
    return buf.tobytes()


def decode_upload(data: bytes, max_pixels: int) -> np.ndarray:
    """
    Decode an uploaded garment photo (JPEG, PNG, WebP, BMP) to HxWx3 uint8 RGB.

    Raises ValueError saying what is wrong: not an image, too small (< MIN_SIDE px a side),
    too large (> ``max_pixels``) or of an absurd aspect ratio (> MAX_ASPECT).
    """
    width, height = _size(data)
    if width * height > max_pixels:
        raise ValueError(f'the photo is too large ({width}x{height}); send at most '
                         f'{max_pixels} pixels')
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError('the upload is not a JPEG, PNG, WebP or BMP image')
    height, width = bgr.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise ValueError(f'the photo is too small ({width}x{height}); send at least '
                         f'{MIN_SIDE} px a side')
    if max(height, width) / min(height, width) > MAX_ASPECT:
        raise ValueError(f'the photo is too narrow ({width}x{height})')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _size(data: bytes) -> tuple[int, int]:
    """Read width and height from the image header, before any pixel is decoded."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        raise ValueError('the upload is not a JPEG, PNG, WebP or BMP image') from None
