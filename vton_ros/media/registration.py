"""
Image registration for live follow: the try-on frame's clothing found again in a new frame.

mediapipe's landmarks of one body in two frames disagree by 10-40 px (more for the points
it guesses, such as the hips of a portrait cut at the waist), so the move of the body
between the try-on frame and a new frame, fitted to landmarks alone, is off by as much.
:func:`register` refines that fit with the images themselves: OpenCV's ECC
(``cv2.findTransformECC``, an affine) matches the try-on frame's pixels inside its garment
region to the new frame, on grey copies at ``REGISTER_SCALE`` of the size
(:func:`small_gray`, 160x120 for 640x480: a few ms). ECC only refines a guess (the
landmarks' fit); it is given up when it does not converge or its correlation is low.
"""

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


def register(template: np.ndarray, region: np.ndarray, image: np.ndarray,
             guess: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
    """
    Refine an affine move from the try-on frame to a new frame by their images.

    template, image: :func:`small_gray` of the try-on frame and the new frame; region:
    uint8 mask (template's size) of the pixels to match; guess: 2x3 try-on frame -> new
    frame in full-size pixels; size: (height, width) of the full frames. Returns the
    refined 2x3 (full-size pixels) or None (no convergence, or correlation below
    MIN_CORRELATION).
    """
    if template.shape != image.shape or region.shape != template.shape:
        return None
    scale = _to_small(size, template.shape)
    warp = (scale @ np.vstack([guess, (0.0, 0.0, 1.0)]) @ np.linalg.inv(scale))[:2]
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, REGISTER_ITERATIONS, 1e-4)
    try:
        corr, warp = cv2.findTransformECC(template, image, warp.astype(np.float32),
                                          cv2.MOTION_AFFINE, criteria, region, 3)
    except cv2.error:  # did not converge (a flat region, a far guess)
        return None
    if not corr >= MIN_CORRELATION:
        return None
    full = np.linalg.inv(scale) @ np.vstack([warp.astype(np.float64), (0.0, 0.0, 1.0)]) @ scale
    return full[:2]
