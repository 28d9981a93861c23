"""
The paper's agnostic-mask model: an smp U-Net (ResNet-50 encoder, 1 channel, sigmoid).

The network outputs one logit per pixel; the sigmoid is applied in :meth:`Segmenter.predict`
and in the Dice loss (numerically the same as an ``activation='sigmoid'`` head, but stable
in training). Inputs are RGB scaled to [0, 1] and normalised with the ImageNet mean/std.

Checkpoints are one ``torch.save`` file (``*.pt``) holding a plain dict, loadable with
``weights_only=True``::

    {'format': 'vton_ros.segmentation', 'version': 1,
     'config': {encoder, encoder_depth, decoder_channels, height, width, threshold,
                cloth_type},
     'state_dict': {...}, 'metadata': {epoch, val_iou, ...},
     'training': {...} or None}   # optimizer/RNG state, only in last.pt

so :meth:`Segmenter.from_pretrained` needs nothing but the path. A file that is not such a
checkpoint, or whose weights do not match its config, raises :class:`CheckpointError`.
"""

from dataclasses import asdict, dataclass, fields
import logging
import os
import pickle
from typing import Any
import zipfile

import numpy as np
import segmentation_models_pytorch as smp
import torch
from torch import nn

from vton_ros.pipeline.device import resolve_device, resolve_dtype
from vton_ros.pipeline.preprocess import check_image, cover_resize, uncrop
from vton_ros.settings.choices import CLOTH_TYPES

_LOG = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 'vton_ros.segmentation'
CHECKPOINT_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TRAIN_HINT = ('train one with `train_segmentation --data VITON_HD_ROOT --out DIR` and pass '
              'DIR/best.pt, or use the pose backend (no checkpoint needed)')


class CheckpointError(ValueError):
    """A file is not a usable vton_ros segmentation checkpoint (message says why)."""


@dataclass(frozen=True)
class SegmentationConfig:
    """
    Architecture and input geometry of the agnostic-mask U-Net.

    encoder: any smp encoder name (the paper: 'resnet50'); weights are never downloaded.
    encoder_depth/decoder_channels: smp U-Net depth (3-5) and one decoder width per level.
    height/width: network input size in pixels, multiples of 2**encoder_depth.
    threshold: probability in (0, 1) above which a pixel is masked.
    cloth_type: which agnostic mask the model was trained for ('upper' for VITON-HD).
    """

    encoder: str = 'resnet50'
    encoder_depth: int = 5
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)
    height: int = 512
    width: int = 384
    threshold: float = 0.5
    cloth_type: str = 'upper'

    def __post_init__(self) -> None:
        """Validate (raises ValueError with the fix)."""
        if self.encoder not in smp.encoders.get_encoder_names():
            raise ValueError(f'unknown encoder {self.encoder!r}; valid: e.g. resnet50, '
                             'resnet34, resnet18 (see segmentation_models_pytorch.encoders.'
                             'get_encoder_names())')
        if not 3 <= self.encoder_depth <= 5:
            raise ValueError(f'encoder_depth must be 3..5, got {self.encoder_depth}')
        if len(self.decoder_channels) != self.encoder_depth:
            raise ValueError(f'decoder_channels needs {self.encoder_depth} entries (one per '
                             f'level), got {self.decoder_channels}')
        step = 2 ** self.encoder_depth
        if self.height <= 0 or self.width <= 0 or self.height % step or self.width % step:
            raise ValueError(f'height/width ({self.height}x{self.width}) must be positive '
                             f'multiples of {step} for encoder_depth {self.encoder_depth}')
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f'threshold must be in (0, 1), got {self.threshold}')
        if self.cloth_type not in CLOTH_TYPES:
            raise ValueError(f'unknown cloth_type {self.cloth_type!r}; '
                             f'valid: {", ".join(CLOTH_TYPES)}')

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (lists for tuples) for checkpoints and JSON."""
        out = asdict(self)
        out['decoder_channels'] = list(self.decoder_channels)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> 'SegmentationConfig':
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f'unknown segmentation config keys {unknown}; valid: {sorted(known)}')
        data = dict(data)
        if 'decoder_channels' in data:
            data['decoder_channels'] = tuple(int(c) for c in data['decoder_channels'])
        return cls(**data)


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: config, weights, metadata and optional training state."""

    config: SegmentationConfig
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any]
    training: dict[str, Any] | None


def build_model(config: SegmentationConfig) -> nn.Module:
    """
    Build the smp U-Net of ``config`` with random weights (no download).

    forward: (N, 3, height, width) normalised float -> (N, 1, height, width) logits.
    """
    return smp.Unet(encoder_name=config.encoder, encoder_depth=config.encoder_depth,
                    encoder_weights=None, decoder_channels=config.decoder_channels,
                    in_channels=3, classes=1, activation=None)


def save_checkpoint(path: str, model: nn.Module, config: SegmentationConfig,
                    metadata: dict[str, Any] | None = None,
                    training: dict[str, Any] | None = None) -> None:
    """Write ``model``'s weights with ``config`` (and metadata) to ``path`` atomically."""
    state = {k: v.detach().to('cpu', copy=True) for k, v in model.state_dict().items()}
    payload = {'format': CHECKPOINT_FORMAT, 'version': CHECKPOINT_VERSION,
               'config': config.to_dict(), 'state_dict': state,
               'metadata': dict(metadata or {}), 'training': training}
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f'{path}.tmp'
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str, expect: dict[str, Any] | None = None) -> Checkpoint:
    """
    Read a checkpoint written by :func:`save_checkpoint` (on CPU).

    expect: config fields the caller requires (e.g. ``{'encoder': 'resnet50'}``); a
    different stored value raises :class:`CheckpointError` naming the field.
    Raises FileNotFoundError for a missing path, CheckpointError for anything else wrong.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'segmentation checkpoint not found: {path}; {TRAIN_HINT}')
    try:
        raw = torch.load(path, map_location='cpu', weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError,
            OSError, ValueError) as err:
        raise CheckpointError(f'{path} is not a readable torch checkpoint '
                              f'({type(err).__name__}: {str(err)[:200]}); {TRAIN_HINT}') from err
    if not isinstance(raw, dict) or raw.get('format') != CHECKPOINT_FORMAT:
        raise CheckpointError(f'{path} is not a vton_ros segmentation checkpoint (no '
                              f"'format': {CHECKPOINT_FORMAT!r} entry); {TRAIN_HINT}")
    if raw.get('version') != CHECKPOINT_VERSION:
        raise CheckpointError(f'{path} has checkpoint version {raw.get("version")}, this '
                              f'vton_ros reads version {CHECKPOINT_VERSION}')
    try:
        config = SegmentationConfig.from_dict(raw['config'])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f'{path} has an invalid config: {err}') from err
    for key, want in (expect or {}).items():
        have = getattr(config, key, None)
        if isinstance(want, list):
            want = tuple(want)
        if have != want:
            raise CheckpointError(f'config mismatch in {path}: {key} is {have!r} in the '
                                  f'checkpoint but {want!r} was requested')
    state = raw.get('state_dict')
    if not isinstance(state, dict):
        raise CheckpointError(f'{path} has no state_dict')
    return Checkpoint(config, state, dict(raw.get('metadata') or {}), raw.get('training'))


def model_from_checkpoint(ckpt: Checkpoint, path: str = '<checkpoint>') -> nn.Module:
    """Build the model of ``ckpt.config`` and load its weights (CheckpointError if they differ)."""
    model = build_model(ckpt.config)
    try:
        model.load_state_dict(ckpt.state_dict, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f'weights in {path} do not match its config '
                              f'{ckpt.config.to_dict()}: {str(err)[:300]}') from err
    return model


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 RGB -> (3, H, W) float32, ImageNet-normalised."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


class Segmenter:
    """Inference wrapper: any-size RGB photo -> agnostic mask at the photo's own size."""

    def __init__(self, model: nn.Module, config: SegmentationConfig,
                 device: str = 'auto', precision: str = 'auto',
                 threshold: float | None = None) -> None:
        """Move ``model`` to device/precision ('auto' = bf16/fp16 on CUDA, fp32 on CPU)."""
        self.config = config
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(precision, self.device)
        self.threshold = config.threshold if threshold is None else float(threshold)
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f'threshold must be in (0, 1), got {self.threshold}')
        self.model = model.to(device=self.device, dtype=self.dtype).eval()

    @classmethod
    def from_pretrained(cls, path: str, device: str = 'auto', precision: str = 'auto',
                        threshold: float | None = None) -> 'Segmenter':
        """Load a checkpoint; its stored config gives encoder, size and default threshold."""
        ckpt = load_checkpoint(path)
        model = model_from_checkpoint(ckpt, path)
        _LOG.info('loaded segmentation checkpoint %s (%s %dx%d, epoch %s, val IoU %s)', path,
                  ckpt.config.encoder, ckpt.config.height, ckpt.config.width,
                  ckpt.metadata.get('epoch'), ckpt.metadata.get('val_iou'))
        return cls(model, ckpt.config, device, precision, threshold)

    @torch.inference_mode()
    def predict_proba(self, rgb: np.ndarray) -> np.ndarray:
        """
        HxWx3 uint8 RGB -> HxW float32 probabilities in [0, 1] at the input size.

        The photo is cover-resized and centre-cropped to the model size; pixels outside the
        crop get probability 0.
        """
        check_image(rgb, 'rgb')
        small, box = cover_resize(rgb, self.config.height, self.config.width)
        x = to_tensor(small)[None].to(device=self.device, dtype=self.dtype)
        prob = torch.sigmoid(self.model(x).float())[0, 0].cpu().numpy()
        return np.clip(uncrop(prob, box), 0.0, 1.0)

    def predict(self, rgb: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """HxWx3 uint8 RGB -> HxW uint8 mask (0 or 255) at the input size."""
        thr = self.threshold if threshold is None else threshold
        return np.where(self.predict_proba(rgb) > thr, 255, 0).astype(np.uint8)
