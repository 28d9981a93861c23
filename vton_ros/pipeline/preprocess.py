"""
Image geometry shared by the try-on pipeline and the mask models.

Two ways to fit an image to a (height, width) target:

- cover: scale so the target is covered, centre-crop the excess (person photos and masks);
  :class:`CropBox` remembers the crop so results can be put back into the original frame.
- letterbox: scale so the image fits inside, pad the rest (garment photos, on white).
"""

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CropBox:
    """
    A crop of a source image that has the target aspect ratio.

    ``top``/``left``/``height``/``width`` are in source pixels; ``src_height``/``src_width``
    is the source size. A centre crop lies inside the source; a person-framing box
    (:mod:`vton_ros.pipeline.framing`) may reach past it (negative top/left: padding).
    """

    top: int
    left: int
    height: int
    width: int
    src_height: int
    src_width: int


def check_image(image: np.ndarray, name: str, channels: int | None = 3) -> None:
    """
    Raise ValueError unless ``image`` is a non-empty uint8 array of the expected layout.

    channels=3 expects HxWx3 (RGB), channels=None expects HxW (a mask).
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f'{name} must be a numpy array, got {type(image).__name__}')
    if image.dtype != np.uint8:
        raise ValueError(f'{name} must be uint8 (0-255), got {image.dtype}; '
                         'convert with (x * 255).clip(0, 255).astype(np.uint8)')
    if channels is None:
        if image.ndim != 2:
            raise ValueError(f'{name} must be HxW (one channel), got shape {image.shape}')
    elif image.ndim != 3 or image.shape[2] != channels:
        raise ValueError(f'{name} must be HxWx{channels}, got shape {image.shape}')
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f'{name} is empty (shape {image.shape})')


def centre_crop_box(src_height: int, src_width: int, height: int, width: int) -> CropBox:
    """Largest centre crop of a src_height x src_width image with aspect height:width."""
    if src_height * width > src_width * height:  # source is taller than the target
        crop_w = src_width
        crop_h = max(1, min(src_height, round(src_width * height / width)))
    else:
        crop_h = src_height
        crop_w = max(1, min(src_width, round(src_height * width / height)))
    top = (src_height - crop_h) // 2
    left = (src_width - crop_w) // 2
    return CropBox(top, left, crop_h, crop_w, src_height, src_width)


def cover_resize(image: np.ndarray, height: int, width: int,
                 nearest: bool = False) -> tuple[np.ndarray, CropBox]:
    """
    Centre-crop ``image`` (HxW or HxWxC) to the target aspect and resize it.

    Returns the (height, width[, C]) image and the crop box used. ``nearest`` keeps mask
    values binary; otherwise area (downscale) or bicubic (upscale) interpolation is used.
    """
    box = centre_crop_box(image.shape[0], image.shape[1], height, width)
    crop = image[box.top:box.top + box.height, box.left:box.left + box.width]
    return resize(crop, height, width, nearest), box


def uncrop(image: np.ndarray, box: CropBox, background: np.ndarray | None = None,
           nearest: bool = False) -> np.ndarray:
    """
    Undo :func:`cover_resize`: resize ``image`` to the crop and place it in the frame.

    Pixels outside the crop come from ``background`` (same size as the source) or are 0.
    """
    shape = (box.src_height, box.src_width) + image.shape[2:]
    if background is not None:
        if background.shape != shape:
            raise ValueError(f'background shape {background.shape} != source shape {shape}')
        out = background.copy()
    else:
        out = np.zeros(shape, dtype=image.dtype)
    out[box.top:box.top + box.height, box.left:box.left + box.width] = resize(
        image, box.height, box.width, nearest)
    return out


def letterbox(image: np.ndarray, height: int, width: int, fill: int = 255) -> np.ndarray:
    """Scale ``image`` (HxWxC uint8) to fit inside height x width, centred, padded with fill."""
    scale = min(height / image.shape[0], width / image.shape[1])
    new_h = max(1, min(height, round(image.shape[0] * scale)))
    new_w = max(1, min(width, round(image.shape[1] * scale)))
    out = np.full((height, width) + image.shape[2:], fill, dtype=image.dtype)
    top = (height - new_h) // 2
    left = (width - new_w) // 2
    out[top:top + new_h, left:left + new_w] = resize(image, new_h, new_w, False)
    return out


def blur_mask(mask: np.ndarray, radius: float) -> np.ndarray:
    """
    Gaussian-blur a mask (HxW uint8) with standard deviation ``radius`` pixels (0: a copy).

    CatVTON's app blurs its masks (radius 9 at 1024x768) before the pipeline thresholds them
    at the middle value: corners round off and small notches fill, as in its results.
    """
    if radius < 0:
        raise ValueError(f'mask blur radius must be >= 0, got {radius}')
    if radius == 0:
        return mask.copy()
    return cv2.GaussianBlur(mask, (0, 0), radius)


def resize(image: np.ndarray, height: int, width: int, nearest: bool) -> np.ndarray:
    """Resize HxW[xC] to height x width: nearest (mask), area (down), bicubic (up); a copy."""
    if image.shape[0] == height and image.shape[1] == width:
        return image.copy()
    if nearest:
        interp = cv2.INTER_NEAREST
    elif height <= image.shape[0] and width <= image.shape[1]:
        interp = cv2.INTER_AREA
    else:
        interp = cv2.INTER_CUBIC
    out = cv2.resize(image, (width, height), interpolation=interp)
    return out.reshape((height, width) + image.shape[2:])
