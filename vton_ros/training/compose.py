"""
Offline background composition (the paper's fix for real-world photos).

Each person photo of a VITON-HD-layout dataset is cut out with a person matter and pasted
on a random background; the agnostic masks are carried over unchanged, and the matte used
is written to ``<split>/person-mask/<name>.png`` (training can then swap backgrounds again
on the fly). Mattes:

- :class:`SamMatter`: Segment Anything, when a SAM checkpoint is given and the
  ``segment_anything`` package is installed (neither ships with vton_ros), prompted with the
  box and centre of the bundled segmenter's person mask;
- :class:`BundledMatter` (default): mediapipe's bundled SelfieSegmentation (general model),
  no download.

Every random choice comes from (seed, split, index): the same seed gives the same files.
"""

import json
import logging
import os
import shutil
from typing import Callable, Iterable

import cv2
import numpy as np

from vton_ros.pipeline.preprocess import check_image
from vton_ros.training.dataset import (list_backgrounds, list_samples, MASK_DIR, PERSON_DIR,
                                       read_rgb, replace_background, SPLITS)

_LOG = logging.getLogger(__name__)

Progress = Callable[[Iterable, str, int], Iterable]


class BundledMatter:
    """Person matte from mediapipe's bundled SelfieSegmentation: HxW float32 in [0, 1]."""

    name = 'mediapipe-selfie-segmentation'

    def __init__(self) -> None:
        """Create the mediapipe graph (model ships inside the mediapipe wheel)."""
        from mediapipe.python.solutions import selfie_segmentation
        self._seg = selfie_segmentation.SelfieSegmentation(model_selection=0)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> HxW float32 person probability."""
        check_image(rgb, 'rgb')
        res = self._seg.process(np.ascontiguousarray(rgb))
        if res.segmentation_mask is None:
            return np.zeros(rgb.shape[:2], np.float32)
        return np.asarray(res.segmentation_mask, np.float32).clip(0.0, 1.0)

    def close(self) -> None:
        """Release the mediapipe graph."""
        self._seg.close()


class SamMatter:
    """Person matte from Segment Anything, prompted by the bundled segmenter's person box."""

    def __init__(self, checkpoint: str, model_type: str | None = None,
                 device: str = 'cpu') -> None:
        """
        Load SAM (ImportError/FileNotFoundError with the fix when unavailable).

        model_type: 'vit_h' | 'vit_l' | 'vit_b'; None guesses it from the file name.
        """
        try:
            from segment_anything import sam_model_registry, SamPredictor
        except ImportError as err:
            raise ImportError('SAM needs the segment_anything package (pip install '
                              'segment-anything); without it the bundled person segmenter '
                              'is used') from err
        if not os.path.isfile(checkpoint):
            raise FileNotFoundError(f'SAM checkpoint not found: {checkpoint}')
        if model_type is None:
            base = os.path.basename(checkpoint).lower()
            model_type = next((t for t in ('vit_h', 'vit_l', 'vit_b') if t in base), 'vit_h')
        if model_type not in sam_model_registry:
            raise ValueError(f'unknown SAM model type {model_type!r}; valid: '
                             f'{", ".join(sorted(sam_model_registry))}')
        sam = sam_model_registry[model_type](checkpoint=checkpoint).to(device)
        self._predictor = SamPredictor(sam)
        self._prompt = BundledMatter()
        self.name = f'sam-{model_type}:{os.path.basename(checkpoint)}'

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> HxW float32 matte (0/1); empty when no person is seen."""
        coarse = self._prompt(rgb) > 0.5
        if not coarse.any():
            return np.zeros(rgb.shape[:2], np.float32)
        ys, xs = np.nonzero(coarse)
        box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float32)
        point = np.array([[np.median(xs), np.median(ys)]], np.float32)
        self._predictor.set_image(rgb)
        masks, scores, _ = self._predictor.predict(point_coords=point, point_labels=np.ones(1),
                                                   box=box, multimask_output=True)
        return masks[int(np.argmax(scores))].astype(np.float32)

    def close(self) -> None:
        """Release the prompt segmenter."""
        self._prompt.close()


def create_matter(sam_checkpoint: str | None = None,
                  device: str = 'cpu') -> BundledMatter | SamMatter:
    """SAM when a checkpoint is given and segment_anything imports, else the bundled one."""
    if sam_checkpoint:
        try:
            return SamMatter(sam_checkpoint, device=device)
        except ImportError as err:
            _LOG.warning('%s; falling back to the bundled person segmenter', err)
    return BundledMatter()


def compose_dataset(data: str, backgrounds: str, out: str,
                    matter: Callable[[np.ndarray], np.ndarray], seed: int = 0,
                    splits: tuple[str, ...] = SPLITS, feather: float = 0.004,
                    progress: Progress | None = None) -> dict[str, int]:
    """
    Write ``out`` in the layout of ``data`` with every person on a random background.

    matter: HxWx3 uint8 RGB -> HxW float32 person matte in [0, 1].
    feather: matte edge blur, as a fraction of the image's short side.
    Returns the number of images written per split.
    """
    if os.path.abspath(data) == os.path.abspath(out):
        raise ValueError('--out must differ from --data (the source is never overwritten)')
    bgs = list_backgrounds(backgrounds)
    wrap = progress or (lambda it, desc, total: it)
    counts = {}
    for split_index, split in enumerate(splits):
        samples = list_samples(data, split)
        for sub in ('image', MASK_DIR, PERSON_DIR):
            os.makedirs(os.path.join(out, split, sub), exist_ok=True)
        for i, sample in enumerate(wrap(samples, f'compose {split}', len(samples))):
            rng = np.random.default_rng([seed, split_index, i])
            rgb = read_rgb(sample.image_path)
            matte = np.asarray(matter(rgb), np.float32)
            k = int(round(feather * min(rgb.shape[:2]))) * 2 + 1
            if k > 1:
                matte = cv2.GaussianBlur(matte, (k, k), 0)
            bg = read_rgb(bgs[int(rng.integers(len(bgs)))])
            if rng.random() < 0.5:
                bg = bg[:, ::-1]
            composite = replace_background(rgb, matte, np.ascontiguousarray(bg))
            cv2.imwrite(os.path.join(out, split, 'image', f'{sample.name}.jpg'),
                        cv2.cvtColor(composite, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            shutil.copyfile(sample.mask_path,
                            os.path.join(out, split, MASK_DIR, f'{sample.name}_mask.png'))
            cv2.imwrite(os.path.join(out, split, PERSON_DIR, f'{sample.name}.png'),
                        (matte * 255).round().clip(0, 255).astype(np.uint8))
        counts[split] = len(samples)
    info = {'source': os.path.abspath(data), 'backgrounds': os.path.abspath(backgrounds),
            'num_backgrounds': len(bgs), 'seed': seed,
            'matter': getattr(matter, 'name', type(matter).__name__), 'counts': counts}
    with open(os.path.join(out, 'compose.json'), 'w', encoding='utf-8') as f:
        json.dump(info, f, indent=2)
    _LOG.info('composed %s into %s with %s', counts, out, info['matter'])
    return counts
