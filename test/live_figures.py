"""The drawn figure of the live-follow tests: landmarks, masks, scenes, known moves.

test_live_warp, test_live_register and test_live_between import these, never each other.
"""

import cv2
import numpy as np

H, W = 480, 640


def figure_landmarks() -> np.ndarray:
    """(33, 3) landmarks of an upright figure facing the camera, all visible."""
    lms = np.zeros((33, 3))
    lms[:, 2] = 0.99
    points = {0: (320, 90), 2: (330, 80), 5: (310, 80), 7: (345, 85), 8: (295, 85),
              9: (328, 108), 10: (312, 108),
              11: (380, 160), 12: (260, 160), 13: (405, 240), 14: (235, 240),
              15: (415, 315), 16: (225, 315), 17: (420, 330), 18: (220, 330),
              19: (418, 335), 20: (222, 335), 21: (410, 328), 22: (230, 328),
              23: (360, 320), 24: (280, 320), 25: (362, 400), 26: (278, 400),
              27: (362, 470), 28: (278, 470), 29: (366, 478), 30: (274, 478),
              31: (372, 478), 32: (268, 478)}
    for i, (x, y) in points.items():
        lms[i, :2] = (x, y)
    return lms


def upper_mask(lms: np.ndarray) -> np.ndarray:
    """Torso hull plus arm capsules: HxW uint8 0/255 (like the pose masker's upper mask)."""
    mask = np.zeros((H, W), np.uint8)
    torso = lms[[11, 12, 24, 23], :2] + np.array([[15, -12], [-15, -12], [-12, 25], [12, 25]])
    cv2.fillConvexPoly(mask, np.round(torso).astype(np.int32), 255)
    for a, b in ((11, 13), (13, 15), (12, 14), (14, 16)):
        p, q = np.round(lms[a, :2]).astype(int), np.round(lms[b, :2]).astype(int)
        cv2.line(mask, tuple(int(v) for v in p), tuple(int(v) for v in q), 255, 44)
        cv2.circle(mask, tuple(int(v) for v in q), 22, 255, -1)
    return mask


def scene(lms: np.ndarray) -> np.ndarray:
    """Draw a textured background and a shopper in a plain blue shirt."""
    yy, xx = np.mgrid[0:H, 0:W]
    bg = np.stack([120 + 60 * np.sin(xx / 37.0), 140 + 50 * np.cos(yy / 29.0),
                   100 + 40 * np.sin((xx + yy) / 51.0)], -1)
    img = bg.clip(0, 255).astype(np.uint8)
    cv2.circle(img, tuple(int(v) for v in lms[0, :2]), 45, (225, 180, 150), -1)
    img[cv2.erode(upper_mask(lms), np.ones((9, 9), np.uint8)) > 0] = (40, 60, 170)
    return img


def shirt_scene(lms: np.ndarray, grain: float = 4.0) -> np.ndarray:
    """Draw the figure in a shirt with folds and print (registration needs texture).

    grain: the print's feature size (px, a Gaussian's sigma), its contrast kept.
    """
    img = scene(lms)
    shirt = np.all(img == (40, 60, 170), axis=-1)
    noise = cv2.GaussianBlur(np.random.default_rng(0).normal(0, 1, (H, W)), (0, 0), grain)
    noise *= grain / 4.0
    pattern = np.stack([40 + 600 * noise, 60 + 900 * noise, 170 + 0 * noise], -1)
    img[shirt] = pattern[shirt].clip(0, 255).astype(np.uint8)
    return img


def tried_on(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Make the 'try-on result': a striped red garment with texture inside the mask."""
    yy, xx = np.mgrid[0:H, 0:W]
    cloth = np.stack([180 + 40 * np.sin(yy / 6.0), 40 + 30 * np.sin(xx / 9.0),
                      50 + 20 * np.cos((xx - yy) / 7.0)], -1).clip(0, 255).astype(np.uint8)
    out = frame.copy()
    out[mask > 127] = cloth[mask > 127]
    return out


def reference_scene(draw=None) -> tuple:
    """(landmarks, frame, mask, try-on result) of the figure; ``draw`` paints it (scene)."""
    lms = figure_landmarks()
    frame = (draw or scene)(lms)
    mask = upper_mask(lms)
    return lms, frame, mask, tried_on(frame, mask)


def moved(matrix: np.ndarray, image: np.ndarray, nearest: bool = False) -> np.ndarray:
    """Apply a 2x3 affine to an image (the truth of a rigid move)."""
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(image, matrix, (W, H), flags=flags, borderMode=cv2.BORDER_REFLECT)


def move_points(matrix: np.ndarray, lms: np.ndarray) -> np.ndarray:
    out = lms.copy()
    out[:, :2] = lms[:, :2] @ matrix[:, :2].T + matrix[:, 2]
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(a & b)) / max(1, np.count_nonzero(a | b))


RIGID = [  # (dx as a fraction of the width, scale, rotation degrees)
    (0.15, 1.0, 0.0), (-0.15, 1.0, 0.0), (0.0, 0.85, 0.0), (0.0, 1.15, 0.0),
    (0.0, 1.0, 10.0), (0.0, 1.0, -10.0), (0.08, 1.1, 6.0), (-0.1, 0.9, -8.0)]
