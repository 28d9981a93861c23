"""
VITON-HD agnostic-mask dataset (the layout CatVTON reads) with augmentation.

Layout::

    <root>/<split>/image/<name>.jpg                 person photo (RGB)
    <root>/<split>/agnostic-mask/<name>_mask.png    agnostic mask (white = inpaint)
    <root>/<split>/person-mask/<name>.png           optional person matte (compose_backgrounds)

splits ``train`` and ``test``. Augmentation (train only): horizontal flip, colour jitter and,
when backgrounds are given, background replacement with a person matte: the
``person-mask`` file when there is one, otherwise a colour key on the plain studio
background of VITON-HD photos (:func:`studio_matte`). Every random choice is drawn from
``(seed, epoch, index)``, so an epoch is the same whether or not training was resumed.
"""

from dataclasses import dataclass
import logging
import os

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from vton_ros.pipeline.preprocess import cover_resize
from vton_ros.pipeline.segmentation import to_tensor

_LOG = logging.getLogger(__name__)

SPLITS = ('train', 'test')
IMAGE_DIR, MASK_DIR, PERSON_DIR = 'image', 'agnostic-mask', 'person-mask'
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')


@dataclass(frozen=True)
class Sample:
    """Paths of one dataset item; ``person_path`` is None when no matte file exists."""

    name: str
    image_path: str
    mask_path: str
    person_path: str | None = None


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation; probabilities in [0, 1], jitter amounts as fractions."""

    flip: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02
    background: float = 0.5   # probability of a new background (when backgrounds are given)


def list_samples(root: str, split: str) -> list[Sample]:
    """List the samples of ``<root>/<split>`` by name; ValueError names what is missing."""
    if split not in SPLITS:
        raise ValueError(f'unknown split {split!r}; valid: {", ".join(SPLITS)}')
    image_dir = os.path.join(root, split, IMAGE_DIR)
    mask_dir = os.path.join(root, split, MASK_DIR)
    for folder in (image_dir, mask_dir):
        if not os.path.isdir(folder):
            raise ValueError(f'{folder} not found: --data must be a VITON-HD root with '
                             f'{split}/{IMAGE_DIR}/<name>.jpg and '
                             f'{split}/{MASK_DIR}/<name>_mask.png')
    person_dir = os.path.join(root, split, PERSON_DIR)
    samples, missing = [], []
    for fname in sorted(os.listdir(image_dir)):
        stem, ext = os.path.splitext(fname)
        if ext.lower() not in IMAGE_EXTENSIONS:
            continue
        mask_path = os.path.join(mask_dir, f'{stem}_mask.png')
        if not os.path.isfile(mask_path):
            missing.append(mask_path)
            continue
        person_path = os.path.join(person_dir, f'{stem}.png')
        samples.append(Sample(stem, os.path.join(image_dir, fname), mask_path,
                              person_path if os.path.isfile(person_path) else None))
    if missing:
        raise ValueError(f'{len(missing)} image(s) in {image_dir} have no mask, e.g. '
                         f'{missing[0]}')
    if not samples:
        raise ValueError(f'no images in {image_dir}')
    return samples


def list_backgrounds(folder: str) -> list[str]:
    """Image files in ``folder`` (sorted, recursive); ValueError when there are none."""
    if not os.path.isdir(folder):
        raise ValueError(f'backgrounds folder not found: {folder}')
    paths = []
    for dirpath, _, names in os.walk(folder):
        paths += [os.path.join(dirpath, n) for n in names
                  if n.lower().endswith(IMAGE_EXTENSIONS + ('.webp', '.bmp'))]
    if not paths:
        raise ValueError(f'no background images (jpg/png/webp/bmp) in {folder}')
    return sorted(paths)


def read_rgb(path: str) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB (ValueError if unreadable)."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f'cannot read image {path}')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_mask(path: str) -> np.ndarray:
    """Read a mask file as HxW uint8 0/255 (anything > 127 is on)."""
    gray = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise ValueError(f'cannot read mask {path}')
    return np.where(gray > 127, 255, 0).astype(np.uint8)


def studio_matte(rgb: np.ndarray, tolerance: float = 30.0) -> np.ndarray:
    """
    Person matte of a photo on a plain background: HxW float32 in [0, 1].

    The background colour is the median of the border pixels; pixels farther than
    ``tolerance`` (RGB distance) are foreground; holes are filled, the largest regions kept,
    and the edge is feathered by a small blur.
    """
    h, w = rgb.shape[:2]
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).astype(np.float32)
    bg = np.median(border, axis=0)
    dist = np.linalg.norm(rgb.astype(np.float32) - bg, axis=2)
    fg = (dist > tolerance).astype(np.uint8)
    k = max(3, (min(h, w) // 100) | 1)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((k, k), np.uint8))
    fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, np.ones((k, k), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(fg, 8)
    if count > 1:
        keep = 1 + np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= 0.01 * h * w)
        fg = np.isin(labels, keep).astype(np.uint8)
    # fill holes: background is what a flood fill from outside the frame reaches
    padded = np.pad(fg, 1)
    cv2.floodFill(padded, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 1)
    fg = np.maximum(fg, (padded[1:-1, 1:-1] == 0).astype(np.uint8))
    return cv2.GaussianBlur(fg.astype(np.float32), (k, k), 0)


def replace_background(rgb: np.ndarray, matte: np.ndarray, background: np.ndarray) -> np.ndarray:
    """
    Alpha-composite: rgb * matte + background * (1 - matte), all HxW(x3), uint8 out.

    background is cover-resized to the photo's size.
    """
    bg, _ = cover_resize(background, rgb.shape[0], rgb.shape[1])
    a = matte.astype(np.float32)[..., None]
    out = rgb.astype(np.float32) * a + bg.astype(np.float32) * (1.0 - a)
    return out.round().clip(0, 255).astype(np.uint8)


def colour_jitter(rgb: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Random brightness, contrast, saturation and hue change of HxWx3 uint8 RGB."""
    x = rgb.astype(np.float32)
    x *= 1.0 + rng.uniform(-cfg.brightness, cfg.brightness)
    mean = x.mean()
    x = (x - mean) * (1.0 + rng.uniform(-cfg.contrast, cfg.contrast)) + mean
    gray = x.mean(axis=2, keepdims=True)
    x = (x - gray) * (1.0 + rng.uniform(-cfg.saturation, cfg.saturation)) + gray
    x = x.clip(0, 255).astype(np.uint8)
    if cfg.hue > 0:
        hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV_FULL)
        shift = int(round(rng.uniform(-cfg.hue, cfg.hue) * 256))
        hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + shift) % 256).astype(np.uint8)
        x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)
    return x


class AgnosticMaskDataset(Dataset):
    """Items: (image (3, H, W) float32 ImageNet-normalised, mask (1, H, W) float32 0/1)."""

    def __init__(self, root: str, split: str, height: int, width: int,
                 augment: AugmentConfig | None = None,
                 backgrounds: list[str] | None = None, seed: int = 0) -> None:
        """Index ``<root>/<split>``; augment=None (validation) applies no augmentation."""
        self.samples = list_samples(root, split)
        self.height, self.width = height, width
        self.augment = augment
        self.backgrounds = list(backgrounds or [])
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random augmentation draws are used."""
        self.epoch = epoch

    def __len__(self) -> int:
        """Return the number of samples."""
        return len(self.samples)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Augmented (height, width, 3) uint8 RGB and (height, width) uint8 0/255 mask."""
        sample = self.samples[index]
        rgb = read_rgb(sample.image_path)
        mask = read_mask(sample.mask_path)
        if mask.shape != rgb.shape[:2]:
            mask = cv2.resize(mask, (rgb.shape[1], rgb.shape[0]),
                              interpolation=cv2.INTER_NEAREST)
        cfg = self.augment
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if cfg is not None and self.backgrounds and rng.random() < cfg.background:
            bg = read_rgb(self.backgrounds[rng.integers(len(self.backgrounds))])
            if sample.person_path is not None:
                matte = read_mask(sample.person_path).astype(np.float32) / 255.0
                if matte.shape != rgb.shape[:2]:
                    matte = cv2.resize(matte, (rgb.shape[1], rgb.shape[0]))
            else:
                matte = studio_matte(rgb)
            matte = np.maximum(matte, (mask > 0).astype(np.float32))
            rgb = replace_background(rgb, matte, bg)
        rgb, _ = cover_resize(rgb, self.height, self.width)
        mask, _ = cover_resize(mask, self.height, self.width, nearest=True)
        if cfg is not None:
            if rng.random() < cfg.flip:
                rgb, mask = rgb[:, ::-1].copy(), mask[:, ::-1].copy()
            rgb = colour_jitter(rgb, rng, cfg)
        return rgb, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Tensors of :meth:`load`."""
        rgb, mask = self.load(index)
        return to_tensor(rgb), torch.from_numpy((mask > 0).astype(np.float32))[None]
