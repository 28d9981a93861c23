"""Image coding for the mirror page: JPEG frames, thumbnails, mask overlays, uploads."""

import io

import cv2
import numpy as np
from PIL import Image

MIN_SIDE = 32  # pixels: a smaller garment photo carries nothing to try on
UPLOAD_SIDE = 1024  # longest side an upload is kept at (CatVTON runs at 1024x768 at most)
MAX_DECODE_BYTES = 24 << 20  # memory one decode may take at its peak (decode_cost)
FORMATS = ('JPEG', 'PNG', 'WEBP', 'BMP')  # what the page and the README promise
NOT_AN_IMAGE = 'the upload is not a JPEG, PNG, WebP or BMP image'
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


def decode_upload(data: bytes, max_pixels: int, max_side: int = UPLOAD_SIDE,
                  max_bytes: int = MAX_DECODE_BYTES) -> np.ndarray:
    """
    Decode an uploaded garment photo (JPEG, PNG, WebP, BMP) to HxWx3 uint8 RGB.

    The header is checked before any pixel is decoded: the format, the size (at most
    ``max_pixels`` pixels, at least MIN_SIDE a side, at most MAX_ASPECT long) and the memory
    its decoding would take at its peak (at most ``max_bytes``: see :func:`decode_cost`),
    each refusal a ValueError naming its reason. The photo comes back shrunk to ``max_side``
    on its longest side (a JPEG is decoded at the smaller scale directly).
    """
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise ValueError(NOT_AN_IMAGE) from None
    with image:
        _check_header(image, max_pixels)
        draft(image, max_side)
        _check_cost(image, max_pixels, max_bytes, max_side)  # at its decoded size
        try:
            if image.mode not in _RESIZED_AS_IS:
                image = image.convert('RGB')  # palettes, 16-bit, CMYK: before resizing
            image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            return np.asarray(image.convert('RGB')).copy()
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            raise ValueError('the photo is damaged or cut off; send it again') from None


def draft(image: Image.Image, max_side: int = UPLOAD_SIDE) -> None:
    """Let a JPEG decode at 1/2, 1/4 or 1/8 of its size, still at least ``max_side`` long."""
    scale = max_side / max(image.size)
    if scale < 1:
        image.draft('RGB', (max(1, int(image.width * scale)), max(1, int(image.height * scale))))


def decode_cost(image: Image.Image, max_side: int = UPLOAD_SIDE) -> int:
    """
    Return the bytes decoding ``image`` and shrinking it to ``max_side`` take at the peak.

    Measured with Pillow 13, per pixel of the decoded size: 2 for grey, 6 for RGB (Pillow
    keeps 4 bytes a pixel, plus the resize's passes), 10 for the modes converted to RGB or
    resized with alpha (RGBA, LA, P, 1, I;16, CMYK), 17 for any WebP (two RGBA canvases
    and a copy of the frame); plus 6 per pixel of the photo kept.
    """
    per_pixel = 17 if image.format == 'WEBP' else _PEAK_BYTES.get(image.mode, 10)
    kept = min(1.0, max_side / max(image.size)) ** 2  # share of the pixels kept
    return int(image.width * image.height * (per_pixel + 6 * kept))


def _check_header(image: Image.Image, max_pixels: int) -> None:
    """Raise ValueError if the size the header declares is not one to decode."""
    width, height = image.size
    if width * height > max_pixels:
        raise ValueError(f'the photo is too large ({width}x{height}); send at most '
                         f'{max_pixels / 1e6:.1f} megapixels')
    if min(height, width) < MIN_SIDE:
        raise ValueError(f'the photo is too small ({width}x{height}); send at least '
                         f'{MIN_SIDE} px a side')
    if max(height, width) / min(height, width) > MAX_ASPECT:
        raise ValueError(f'the photo is too narrow ({width}x{height})')


def _check_cost(image: Image.Image, max_pixels: int, max_bytes: int, max_side: int) -> None:
    """Raise ValueError if decoding ``image`` would take over ``max_bytes`` at its peak."""
    cost = decode_cost(image, max_side)
    if cost > max_bytes:
        width, height = image.size  # after draft: a JPEG's reduced size
        most = min(max_pixels, max_bytes * width * height // cost)  # of this kind
        raise ValueError(f'the photo is too large ({width}x{height} decoded); send at most '
                         f'{most / 1e6:.1f} megapixels')


_RESIZED_AS_IS = ('RGB', 'RGBA', 'L', 'LA')
_PEAK_BYTES = {'L': 2, 'RGB': 6}  # per decoded pixel; the other modes 10 (decode_cost)
