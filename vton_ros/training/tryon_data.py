"""
Synthetic paired try-on data: a person, a flat-lay garment, the person wearing it.

Layout (VITON-HD's; ``train_segmentation`` reads ``image`` + ``agnostic-mask``)::

    <root>/<split>/image/<name>.jpg                 the person wearing the garment (target)
    <root>/<split>/cloth/<name>.jpg                 the garment, flat-lay on white
    <root>/<split>/agnostic-mask/<name>_mask.png    upper agnostic mask (white = inpaint)
    <root>/<split>/person-mask/<name>.png           person matte
    <root>/<split>_pairs.txt                        '<name>.jpg <name>.jpg' per line

People: the bundled portraits (:mod:`vton_ros.media.samples`; their pose masks and mattes are
computed once with our ``pose`` mask maker, then cropped, flipped and recoloured per sample)
and drawn figures (:func:`vton_ros.training.synthetic.draw_person`), on their own or on drawn
backgrounds. Garments: procedural patterns (:data:`PATTERNS`) cut to a t-shirt outline. The
target repaints the person's body inside the agnostic mask with the garment's pattern, in the
same pixel scale as the flat-lay image, shaded with the person's own luminance. Every random
choice comes from (seed, split, index).
"""

from dataclasses import dataclass
import os
from typing import Callable, Iterable

import cv2
import numpy as np

from vton_ros.media import samples
from vton_ros.pipeline.preprocess import cover_resize, letterbox
from vton_ros.training.dataset import (AugmentConfig, colour_jitter, IMAGE_DIR, MASK_DIR,
                                       PERSON_DIR, read_mask, read_rgb, replace_background,
                                       studio_matte)
from vton_ros.training.synthetic import draw_background, draw_person

CLOTH_DIR = 'cloth'
PATTERNS = ('solid', 'stripes', 'checks', 'dots', 'gradient', 'shapes')
Colour = tuple[int, int, int]
Progress = Callable[[Iterable, str, int], Iterable]


@dataclass(frozen=True)
class Person:
    """A person photo with its upper agnostic mask (uint8 0/255) and matte (float32 0..1)."""

    rgb: np.ndarray
    mask: np.ndarray
    matte: np.ndarray


@dataclass(frozen=True)
class TryOnPair:
    """One training example; all images (height, width), uint8."""

    target: np.ndarray
    garment: np.ndarray
    mask: np.ndarray
    matte: np.ndarray


def draw_pattern(kind: str, height: int, width: int, colours: tuple[Colour, Colour],
                 period: int, *, vertical: bool = False, seed: int = 0) -> np.ndarray:
    """
    Draw a garment pattern: HxWx3 uint8 RGB.

    colours: (motif colour, ground colour); period: pixels per repeat (stripes, checks,
    dots, shapes). Stripes are horizontal unless ``vertical``; the gradient runs along the
    same axis. ``seed`` places the printed shapes.
    """
    if kind not in PATTERNS:
        raise ValueError(f'unknown pattern {kind!r}; valid: {", ".join(PATTERNS)}')
    if period < 2:
        raise ValueError(f'period must be >= 2 pixels, got {period}')
    fg, bg = (np.array(c, np.float32) for c in colours)
    yy, xx = np.mgrid[0:height, 0:width]
    along = xx if vertical else yy
    if kind == 'solid':
        weight = np.ones((height, width), np.float32)
    elif kind == 'stripes':
        weight = ((along // (period / 2)) % 2 == 0).astype(np.float32)
    elif kind == 'checks':
        weight = ((yy // (period / 2) + xx // (period / 2)) % 2 == 0).astype(np.float32)
    elif kind == 'gradient':
        weight = 1.0 - along / max(1, along.max())
    else:
        canvas = np.zeros((height, width), np.uint8)
        if kind == 'dots':
            for row, y in enumerate(range(period // 2, height + period, period)):
                shift = period // 2 if row % 2 else 0
                for x in range(shift, width + period, period):
                    cv2.circle(canvas, (x, y), max(1, period // 4), 1, -1, cv2.LINE_AA)
        else:
            rng = np.random.default_rng(seed)
            for _ in range(int(height * width / period ** 2 * 0.6)):
                centre = rng.integers((0, 0), (width, height))
                size = int(rng.integers(period // 4, period // 2 + 2))
                if rng.random() < 0.5:
                    cv2.circle(canvas, tuple(int(c) for c in centre), size, 1, -1)
                else:
                    pts = centre + rng.integers(-size, size + 1, (3, 2))
                    cv2.fillConvexPoly(canvas, pts.astype(np.int32), 1)
        weight = canvas.astype(np.float32)
    out = fg * weight[..., None] + bg * (1.0 - weight[..., None])
    return out.round().clip(0, 255).astype(np.uint8)


def flat_lay(pattern: np.ndarray, scale: float = 1.0,
             offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """
    Cut ``pattern`` (HxWx3 uint8) to a t-shirt outline on white, same size and pixel scale.

    scale (<= 1) shrinks the outline about the centre; offset (dy, dx) moves it.
    """
    h, w = pattern.shape[:2]
    sh, sw = max(8, int(h * scale)), max(8, int(w * scale))
    shape = np.zeros((h, w), np.uint8)
    top, left = (h - sh) // 2 + offset[0], (w - sw) // 2 + offset[1]
    small = samples.garment_shape('tshirt', sh, sw)
    y0, x0 = max(0, top), max(0, left)
    y1, x1 = min(h, top + sh), min(w, left + sw)
    shape[y0:y1, x0:x1] = small[y0 - top:y1 - top, x0 - left:x1 - left]
    out = np.full_like(pattern, 255)
    out[shape > 0] = pattern[shape > 0]
    return out


def dress(person: np.ndarray, mask: np.ndarray, matte: np.ndarray, pattern: np.ndarray,
          shading: float = 0.5) -> np.ndarray:
    """
    Paint ``pattern`` on the body inside the agnostic mask, shaded by the person's luminance.

    person, pattern: HxWx3 uint8; mask: HxW uint8 (>= 128 = garment area); matte: HxW float
    in [0, 1] (the body). Outside ``mask`` the result is ``person`` exactly.
    shading: how much of the person's relative luminance (blurred) modulates the pattern.
    """
    alpha = (mask >= 128).astype(np.float32) * matte.clip(0.0, 1.0)
    luma = cv2.cvtColor(person, cv2.COLOR_RGB2GRAY).astype(np.float32) + 1.0
    sigma = max(1.0, person.shape[0] / 48)  # broad shading (folds), not the old print
    luma = cv2.GaussianBlur(luma, (0, 0), sigma)
    inside = alpha > 0.5
    mean = float(luma[inside].mean()) if inside.any() else float(luma.mean())
    shade = np.clip(1.0 + shading * (luma / mean - 1.0), 0.55, 1.25)[..., None]
    cloth = pattern.astype(np.float32) * shade
    out = person.astype(np.float32) * (1.0 - alpha[..., None]) + cloth * alpha[..., None]
    return out.round().clip(0, 255).astype(np.uint8)


def portrait_people(names: tuple[str, ...] = samples.PORTRAITS) -> list[Person]:
    """Return the bundled portraits with pose masks and mattes (mediapipe, once each)."""
    from vton_ros.pipeline.masks import PoseMaskGenerator

    people = []
    with PoseMaskGenerator() as masker:
        for name in names:
            rgb = samples.portrait(name)
            result = masker(rgb, 'upper')
            if not result.person_found or not result.mask.any():
                raise RuntimeError(f'the pose mask maker found no upper body on {name}')
            _, prob = masker.detect(rgb)
            matte = np.maximum(prob, (result.mask > 0) & (prob > 0.2)).astype(np.float32)
            people.append(Person(rgb, result.mask, matte))
    return people


def random_colour(rng: np.random.Generator) -> Colour:
    """Return a random garment colour (any hue, mostly saturated)."""
    hsv = np.array([[[rng.integers(0, 180), rng.integers(90, 256), rng.integers(70, 256)]]],
                   np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def random_pattern(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Draw a random pattern (kind, colours, period, orientation from ``rng``)."""
    fg = random_colour(rng)
    pick = rng.random()
    bg = (245, 245, 245) if pick < 0.4 else (25, 25, 25) if pick < 0.55 else random_colour(rng)
    kind = PATTERNS[int(rng.integers(len(PATTERNS)))]
    return draw_pattern(kind, height, width, (fg, bg), int(rng.integers(16, 41)),
                        vertical=bool(rng.random() < 0.3), seed=int(rng.integers(2 ** 31)))


def crop_portrait(person: Person, height: int, width: int,
                  rng: np.random.Generator) -> Person:
    """Cut a random crop of a portrait around its centre crop, resized to (height, width)."""
    src_h, src_w = person.rgb.shape[:2]
    base_h = min(src_h, src_w * height / width)
    crop_h = base_h * rng.uniform(0.7, 1.0)
    crop_w = crop_h * width / height
    top = rng.uniform(0, src_h - crop_h)
    left = (src_w - crop_w) / 2 + rng.uniform(-0.1, 0.1) * crop_w
    left = float(np.clip(left, 0, src_w - crop_w))
    box = (int(top), int(top + crop_h), int(left), int(left + crop_w))

    def cut(image: np.ndarray, interp: int) -> np.ndarray:
        part = image[box[0]:box[1], box[2]:box[3]]
        return cv2.resize(part, (width, height), interpolation=interp)

    return Person(cut(person.rgb, cv2.INTER_AREA), cut(person.mask, cv2.INTER_NEAREST),
                  cut(person.matte, cv2.INTER_LINEAR))


def make_pair(people: list[Person], height: int, width: int,
              rng: np.random.Generator, portrait_share: float = 0.6) -> TryOnPair:
    """Draw one (target, garment, mask, matte) example."""
    if rng.random() < portrait_share:
        person = crop_portrait(people[int(rng.integers(len(people)))], height, width, rng)
        rgb, mask, matte = person.rgb, person.mask, person.matte
        new_background = rng.random() < 0.4
    else:
        rgb, mask = draw_person(height, width, rng)
        matte = studio_matte(rgb)
        new_background = rng.random() < 0.7
    if new_background:
        rgb = replace_background(rgb, matte, draw_background(height, width, rng))
    if rng.random() < 0.5:
        rgb, mask, matte = rgb[:, ::-1], mask[:, ::-1], matte[:, ::-1]
    rgb = colour_jitter(np.ascontiguousarray(rgb), rng, AugmentConfig())
    mask, matte = np.ascontiguousarray(mask), np.ascontiguousarray(matte)
    pattern = random_pattern(height, width, rng)
    garment = flat_lay(pattern, rng.uniform(0.8, 1.0),
                       (int(rng.integers(-height // 16, height // 16 + 1)),
                        int(rng.integers(-width // 16, width // 16 + 1))))
    return TryOnPair(dress(rgb, mask, matte, pattern), garment, mask,
                     (matte * 255).round().astype(np.uint8))


def make_tryon_dataset(root: str, n_train: int = 4000, n_test: int = 64, height: int = 128,
                       width: int = 96, seed: int = 0, progress: Progress | None = None,
                       people: list[Person] | None = None) -> dict[str, int]:
    """
    Write a paired dataset under ``root`` (layout in the module docstring).

    Returns the number of pairs per split. ``people``: portrait people to use (default:
    :func:`portrait_people`, computed once).
    """
    people = portrait_people() if people is None else people
    counts = {}
    for split_index, (split, count) in enumerate((('train', n_train), ('test', n_test))):
        folders = [os.path.join(root, split, d) for d in (IMAGE_DIR, CLOTH_DIR, MASK_DIR,
                                                          PERSON_DIR)]
        for folder in folders:
            os.makedirs(folder, exist_ok=True)
        names = []
        indices = range(count) if progress is None else progress(range(count), split, count)
        for i in indices:
            pair = make_pair(people, height, width, np.random.default_rng([seed, split_index, i]))
            name = f'{i:05d}_00'
            for folder, image in zip(folders[:2], (pair.target, pair.garment)):
                cv2.imwrite(os.path.join(folder, f'{name}.jpg'),
                            cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(os.path.join(folders[2], f'{name}_mask.png'), pair.mask)
            cv2.imwrite(os.path.join(folders[3], f'{name}.png'), pair.matte)
            names.append(name)
        with open(os.path.join(root, f'{split}_pairs.txt'), 'w') as f:
            f.writelines(f'{n}.jpg {n}.jpg\n' for n in names)
        counts[split] = count
    return counts


def load_pairs(root: str, split: str, height: int, width: int) -> dict[str, np.ndarray]:
    """
    Read a split into arrays: 'target', 'garment' (N, H, W, 3) uint8, 'mask' (N, H, W) uint8.

    As the pipeline does: person and mask cover-resized, garment letterboxed on white.
    """
    pairs_file = os.path.join(root, f'{split}_pairs.txt')
    if not os.path.isfile(pairs_file):
        raise ValueError(f'{pairs_file} not found: make the dataset with make_tryon_data')
    with open(pairs_file) as f:
        pairs = [line.split() for line in f if line.strip()]
    out = {'target': [], 'garment': [], 'mask': []}
    for image_name, cloth_name in pairs:
        stem = os.path.splitext(image_name)[0]
        target = read_rgb(os.path.join(root, split, IMAGE_DIR, image_name))
        garment = read_rgb(os.path.join(root, split, CLOTH_DIR, cloth_name))
        mask = read_mask(os.path.join(root, split, MASK_DIR, f'{stem}_mask.png'))
        out['target'].append(cover_resize(target, height, width)[0])
        out['garment'].append(letterbox(garment, height, width))
        out['mask'].append(cover_resize(mask, height, width, nearest=True)[0])
    return {k: np.stack(v) for k, v in out.items()}
