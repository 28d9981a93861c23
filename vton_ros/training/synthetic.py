"""
A small drawn dataset in the VITON-HD layout, for tests and smoke runs (no real people).

Each image shows a person-like figure (head, neck, torso, arms, legs; random pose, size,
colours and stripe texture) on a plain light studio background; its agnostic mask covers
torso, neck and arms, dilated past the outline, with the head and hands kept, like an
``upper`` agnostic mask. Backgrounds are drawn scenes (gradients, stripes, blobs).
"""

import os

import cv2
import numpy as np

from vton_ros.training.dataset import IMAGE_DIR, MASK_DIR


def draw_person(height: int, width: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One drawn figure: (HxWx3 uint8 RGB photo, HxW uint8 0/255 upper agnostic mask)."""
    h, w = height, width
    bg = rng.integers(215, 250, 3)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = bg
    skin = tuple(int(c) for c in rng.integers((150, 100, 80), (240, 190, 160)))
    cloth = tuple(int(c) for c in rng.integers(20, 200, 3))
    legs = tuple(int(c) for c in rng.integers(10, 120, 3))
    cx = w * rng.uniform(0.4, 0.6)
    scale = rng.uniform(0.8, 1.05)
    sw = 0.42 * w * scale                      # shoulder width
    top = h * rng.uniform(0.12, 0.2)           # shoulder line
    hip = top + 0.42 * h * scale
    head_r = 0.09 * w * scale
    garment = np.zeros((h, w), np.uint8)
    arm_w = max(2, int(0.1 * w * scale))

    def pt(x: float, y: float) -> tuple[int, int]:
        return int(round(x)), int(round(y))

    # legs and head first (not part of the mask)
    for side in (-1, 1):
        cv2.line(img, pt(cx + side * 0.12 * sw, hip), pt(cx + side * 0.18 * sw, h + 5),
                 legs, max(2, int(0.16 * w * scale)))
    cv2.rectangle(img, pt(cx - 0.1 * sw, top - 1.6 * head_r), pt(cx + 0.1 * sw, top), skin, -1)
    head_c = pt(cx, top - 1.6 * head_r - head_r * 0.7)
    cv2.circle(img, head_c, int(head_r), skin, -1)
    # torso and arms (the garment), with stripes for texture
    torso = np.array([pt(cx - sw / 2, top), pt(cx + sw / 2, top), pt(cx + 0.4 * sw, hip),
                      pt(cx - 0.4 * sw, hip)], np.int32)
    cv2.fillConvexPoly(garment, torso, 255)
    hands = []
    for side in (-1, 1):
        shoulder = np.array([cx + side * sw / 2, top + 0.05 * h])
        angle = np.deg2rad(rng.uniform(5, 40))
        elbow = shoulder + 0.22 * h * scale * np.array([side * np.sin(angle), np.cos(angle)])
        angle2 = angle + np.deg2rad(rng.uniform(-30, 10))
        wrist = elbow + 0.2 * h * scale * np.array([side * np.sin(angle2), np.cos(angle2)])
        cv2.line(garment, pt(*shoulder), pt(*elbow), 255, arm_w)
        cv2.line(garment, pt(*elbow), pt(*wrist), 255, arm_w)
        hands.append(wrist)
    stripes = ((np.arange(h)[:, None] // max(2, h // 20)) % 2).astype(np.float32)
    shade = (0.75 + 0.25 * stripes)[..., None] * np.array(cloth, np.float32)
    on = garment > 0
    img[on] = shade.repeat(w, axis=1)[on].astype(np.uint8)
    for wrist in hands:
        cv2.circle(img, pt(*wrist), max(2, int(0.05 * w * scale)), skin, -1)
    noise = rng.normal(0, 3, img.shape)
    img = (img.astype(np.float32) + noise).clip(0, 255).astype(np.uint8)
    k = max(3, (w // 40) | 1)
    mask = cv2.dilate(garment, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    cv2.circle(mask, head_c, int(head_r * 1.1), 0, -1)
    return img, mask


def draw_background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Draw a scene (gradient, stripes and blobs): HxWx3 uint8 RGB."""
    h, w = height, width
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, h)[:, None, None]
    img = (a * (1 - t) + b * t).repeat(w, axis=1)
    period = int(rng.integers(6, 30))
    stripes = ((np.arange(w) // period) % 2)[None, :, None]
    img = img * (0.8 + 0.2 * stripes)
    img = img.clip(0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 8))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(img, centre, int(rng.integers(h // 20 + 1, h // 4 + 2)), colour, -1)
    return np.ascontiguousarray(img)


def make_synthetic_dataset(root: str, n_train: int = 24, n_test: int = 8, height: int = 128,
                           width: int = 96, seed: int = 0,
                           backgrounds: str | None = None, n_backgrounds: int = 6) -> None:
    """Write ``root/{train,test}/{image,agnostic-mask}`` (and drawn backgrounds if asked)."""
    rng = np.random.default_rng(seed)
    for split, count in (('train', n_train), ('test', n_test)):
        os.makedirs(os.path.join(root, split, IMAGE_DIR), exist_ok=True)
        os.makedirs(os.path.join(root, split, MASK_DIR), exist_ok=True)
        for i in range(count):
            img, mask = draw_person(height, width, rng)
            name = f'{i:05d}_00'
            cv2.imwrite(os.path.join(root, split, IMAGE_DIR, f'{name}.jpg'),
                        cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(os.path.join(root, split, MASK_DIR, f'{name}_mask.png'), mask)
    if backgrounds:
        os.makedirs(backgrounds, exist_ok=True)
        for i in range(n_backgrounds):
            bg = draw_background(height + 16 * (i % 3), width + 8 * (i % 2), rng)
            cv2.imwrite(os.path.join(backgrounds, f'bg_{i:03d}.jpg'),
                        cv2.cvtColor(bg, cv2.COLOR_RGB2BGR))
