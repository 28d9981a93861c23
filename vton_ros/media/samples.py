"""
Sample data that ships inside installed wheels: public-domain portraits, drawn garments.

No downloads: the portraits come from scikit-image (astronaut, NASA) and matplotlib
(Grace Hopper, US Navy); no wheel ships garment photos, so garments are drawn here.
"""

import os

import cv2
import numpy as np

PORTRAITS = ('astronaut', 'grace_hopper')
GARMENT_KINDS = ('tshirt', 'skirt', 'dress')


def portrait(name: str = 'astronaut') -> np.ndarray:
    """Return a bundled public-domain portrait as HxWx3 uint8 RGB."""
    if name == 'astronaut':
        from skimage import data
        return np.ascontiguousarray(data.astronaut())
    if name == 'grace_hopper':
        import matplotlib
        path = os.path.join(matplotlib.get_data_path(), 'sample_data', 'grace_hopper.jpg')
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f'matplotlib sample image missing: {path}')
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    raise ValueError(f'unknown portrait {name!r}; valid: {", ".join(PORTRAITS)}')


def garment(kind: str = 'tshirt', color: tuple[int, int, int] = (200, 30, 40),
            height: int = 512, width: int = 384, seed: int = 0) -> np.ndarray:
    """
    Draw a flat-lay garment photo on white: HxWx3 uint8 RGB.

    kind: 'tshirt' (upper), 'skirt' (lower) or 'dress' (overall). A stripe pattern and
    light noise (from ``seed``) give the garment texture.
    """
    h, w = height, width
    mask = garment_shape(kind, h, w)
    rng = np.random.default_rng(seed)
    base = np.array(color, np.float32)
    stripes = (np.arange(h)[:, None] // max(4, h // 24)) % 2
    cloth = base[None, None, :] * (0.8 + 0.2 * stripes[..., None])
    cloth = cloth + rng.normal(0.0, 6.0, (h, w, 3))
    out = np.full((h, w, 3), 255.0, np.float32)
    out[mask > 0] = cloth[mask > 0]
    return out.clip(0, 255).astype(np.uint8)


def garment_shape(kind: str, height: int, width: int) -> np.ndarray:
    """Outline of a flat-lay garment of ``kind``: HxW uint8, 255 on the garment."""
    if kind not in GARMENT_KINDS:
        raise ValueError(f'unknown garment kind {kind!r}; valid: {", ".join(GARMENT_KINDS)}')
    h, w = height, width
    shapes = {
        'tshirt': [(0.30, 0.10), (0.70, 0.10), (0.98, 0.28), (0.85, 0.40), (0.75, 0.33),
                   (0.75, 0.92), (0.25, 0.92), (0.25, 0.33), (0.15, 0.40), (0.02, 0.28)],
        'skirt': [(0.30, 0.15), (0.70, 0.15), (0.90, 0.88), (0.10, 0.88)],
        'dress': [(0.35, 0.05), (0.65, 0.05), (0.68, 0.35), (0.92, 0.95), (0.08, 0.95),
                  (0.32, 0.35)],
    }[kind]
    poly = np.array([[x * w, y * h] for x, y in shapes], dtype=np.int32)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [poly], 255)
    return mask
