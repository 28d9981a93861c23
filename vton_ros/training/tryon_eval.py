"""
Measures of a try-on result inside its mask: colour match and pattern frequency.

Used by the semantic tests to tell a model that dresses the person in the garment from one
that does not. Images are HxWx3 uint8 RGB, masks HxW uint8
(>= 128 = the repainted region).
"""

import cv2
import numpy as np


def region(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return the (N, 3) float32 RGB pixels of ``image`` where ``mask`` >= 128."""
    inside = mask >= 128
    if not inside.any():
        raise ValueError('the mask is empty')
    return image[inside].astype(np.float32)


def hue_share(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int],
              max_hue_diff: float = 25.0, min_saturation: float = 0.25) -> float:
    """
    Return the fraction (0..1) of the masked pixels that have ``colour``'s hue.

    A pixel counts when its hue is within ``max_hue_diff`` degrees of the colour's and its
    saturation is at least ``min_saturation`` (shading and light tints do not matter).
    """
    pixels = region(image, mask).astype(np.uint8)[None]
    ref = np.asarray(colour, np.uint8)[None, None]
    hsv = cv2.cvtColor(pixels, cv2.COLOR_RGB2HSV_FULL)[0].astype(np.float32)
    hue = float(cv2.cvtColor(ref, cv2.COLOR_RGB2HSV_FULL)[0, 0, 0]) * 360 / 256
    diff = np.abs(hsv[:, 0] * 360 / 256 - hue)
    diff = np.minimum(diff, 360 - diff)
    return float(((diff <= max_hue_diff) & (hsv[:, 1] >= min_saturation * 255)).mean())


def row_profile(image: np.ndarray, mask: np.ndarray, min_fill: float = 0.5) -> np.ndarray:
    """
    Mean luminance of the masked pixels of each row, for the rows at least ``min_fill`` full.

    Only the longest run of consecutive such rows is kept (a gap would bend the period).
    """
    inside = mask >= 128
    luma = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    counts = inside.sum(axis=1)
    good = counts >= min_fill * counts.max() if counts.max() else counts > 0
    best, start = (0, 0), None
    for i, ok in enumerate(list(good) + [False]):
        if ok and start is None:
            start = i
        elif not ok and start is not None:
            best = max(best, (i - start, start))
            start = None
    length, first = best
    rows = range(first, first + length)
    return np.array([luma[r][inside[r]].mean() for r in rows], np.float32)


def dominant_period(profile: np.ndarray, min_period: float = 4.0) -> tuple[float, float]:
    """
    (period in samples, peak share) of a 1-D profile's strongest oscillation.

    The profile is detrended (linear fit removed) and Hann-windowed; the peak share is the
    part of the power in the strongest frequency's main lobe (1 = a pure sinusoid, about
    0.8 for square stripes, near 0 without a pattern).
    Periods between ``min_period`` and half the profile length are considered.
    """
    n = len(profile)
    if n < 2 * min_period:
        raise ValueError(f'profile of {n} samples is too short for a period >= {min_period}')
    x = np.arange(n, dtype=np.float64)
    detrended = profile - np.polyval(np.polyfit(x, profile, 1), x)
    size = 1024
    power = np.abs(np.fft.rfft(detrended * np.hanning(n), size)) ** 2
    freqs = np.fft.rfftfreq(size)
    band = (freqs >= 2.0 / n) & (freqs <= 1.0 / min_period)
    if not band.any() or detrended.std() < 0.5:  # flat to half a grey level: no pattern
        return float('nan'), 0.0
    peak = freqs[np.flatnonzero(band)[np.argmax(power[band])]]
    lobe = np.abs(freqs - peak) <= 2.0 / n  # the Hann window's main lobe
    return float(1.0 / peak), float(power[lobe].sum() / power[1:].sum())
