"""
Image registration for live follow: the try-on frame's clothing found again in a new frame.

mediapipe's landmarks of one body in two frames disagree by 10-40 px (more for the points
it guesses, such as the hips of a portrait cut at the waist), so the move of the body
between the try-on frame and a new frame, fitted to landmarks alone, is off by as much.
:func:`register` refines that fit with the images themselves: OpenCV's ECC
(``cv2.findTransformECCWithMask``, an affine) matches the try-on frame's pixels inside its
garment region to the new frame, on grey copies at ``REGISTER_SCALE`` of the size
(:func:`small_gray`, 160x120 for 640x480: a few ms). ECC only refines a guess (the
landmarks' fit); it is given up when it does not converge or its correlation is low. A frame
between posed frames is registered on the last posed frame the same way, after a search for
the region's translation (``cv2.matchTemplate``), since its guess is only the last move.
"""

import math

import cv2
import numpy as np

REGISTER_SCALE = 0.25  # the grey frames registration works on: this fraction of the size
REGISTER_ITERATIONS = 30
MIN_CORRELATION = 0.7  # ECC's correlation coefficient below this: no registration


def small_gray(rgb: np.ndarray) -> np.ndarray:
    """Return the frame as registration sees it: grey, REGISTER_SCALE of its size (uint8)."""
    h, w = rgb.shape[:2]
    size = (max(8, round(w * REGISTER_SCALE)), max(8, round(h * REGISTER_SCALE)))
    return cv2.cvtColor(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA),
                        cv2.COLOR_RGB2GRAY)


def _to_small(size: tuple[int, int], small: tuple[int, int]) -> np.ndarray:
    """3x3: full-size pixel -> small_gray pixel (pixel centres kept)."""
    sy, sx = small[0] / size[0], small[1] / size[1]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def _search(template: np.ndarray, region: np.ndarray, image: np.ndarray, warp: np.ndarray,
            radius: int) -> np.ndarray:
    """
    Correct warp (2x3, small pixels) by the region's best match within radius pixels.

    The image is seen through the warp (so the guess's rotation and scale are undone) and
    the template's region is searched in it for the translation left (cv2.matchTemplate).
    """
    x, y, w, h = cv2.boundingRect(region)
    to_box = np.float32([[1, 0, x - radius], [0, 1, y - radius], [0, 0, 1]])
    seen = cv2.warpAffine(image, (np.vstack([warp, (0, 0, 1)]) @ to_box)[:2],
                          (w + 2 * radius, h + 2 * radius),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)
    found = cv2.matchTemplate(seen, template[y:y + h, x:x + w], cv2.TM_CCOEFF_NORMED,
                              mask=region[y:y + h, x:x + w])
    _, _, _, (bx, by) = cv2.minMaxLoc(np.nan_to_num(found, nan=-1.0))
    out = warp.copy()
    out[:, 2] += warp[:, :2] @ np.float32([bx - radius, by - radius])
    return out


def register(template: np.ndarray, region: np.ndarray, image: np.ndarray,
             guess: np.ndarray, size: tuple[int, int],
             min_correlation: float = MIN_CORRELATION, reach: float = 0.0
             ) -> np.ndarray | None:
    """
    Refine an affine move from one frame (the try-on's, the last posed) to a new frame.

    template, image: :func:`small_gray` of the earlier frame and the new frame; region:
    uint8 mask (template's size) of the template's pixels to match; guess: 2x3 earlier
    frame -> new frame in full-size pixels; size: (height, width) of the full frames;
    reach: first search the region's pixels in the new frame up to this many full-size
    pixels from where the guess puts them (``cv2.matchTemplate``; ECC itself only refines a
    guess within the texture's grain). Returns the refined 2x3 (full-size pixels) or None
    (no convergence, or correlation below min_correlation).
    """
    if template.shape != image.shape or region.shape != template.shape:
        return None
    scale = _to_small(size, template.shape)
    warp = (scale @ np.vstack([guess, (0.0, 0.0, 1.0)]) @ np.linalg.inv(scale))[:2]
    warp = warp.astype(np.float32)
    if reach > 0.0 and region.any():  # the guess's translation first
        warp = _search(template, region, image, warp, math.ceil(reach * scale[0, 0]))
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, REGISTER_ITERATIONS, 1e-4)
    try:  # findTransformECC's own mask is the input image's: the template's needs WithMask
        corr, warp = cv2.findTransformECCWithMask(template, image, region, np.ones_like(image),
                                                  warp, cv2.MOTION_AFFINE, criteria, 3)
    except cv2.error:  # did not converge (a flat region, a far guess)
        return None
    if not corr >= min_correlation:
        return None
    full = np.linalg.inv(scale) @ np.vstack([warp.astype(np.float64), (0.0, 0.0, 1.0)]) @ scale
    return full[:2]
