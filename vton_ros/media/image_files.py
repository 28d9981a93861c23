"""Image files as RGB arrays: the reader of camera stills, garment photos and client inputs."""

from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff')


class SourceError(RuntimeError):
    """A source that cannot be opened (missing file or device, unreadable image)."""


def read_image(path: Path) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB; SourceError if it is not one."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SourceError(f'cannot read image {path}')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
