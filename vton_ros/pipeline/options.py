"""
What a CatVTON call takes and gives: memory/speed options, the result, cancellation.

Shared by :mod:`vton_ros.pipeline.catvton` and its callers; no model code here.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from vton_ros.pipeline.preprocess import CropBox
from vton_ros.settings.views import CatVTONOptions, NOT_A_SETTING

TIMING_KEYS = ('preprocess', 'vae_encode', 'denoise', 'vae_decode', 'safety_check', 'total')

StepCallback = Callable[[int, int, float, torch.Tensor], bool | None]
ONNX_OPTIONS = ('decoder', 'preview_decoder', 'encoder')  # the options onnxruntime runs too


class TryOnCancelled(Exception):
    """
    The step callback asked to stop; no result. The pipeline stays usable.

    ``step``/``total``: the last completed step (0 if none) and the number of steps.
    """

    def __init__(self, message: str = 'try-on cancelled', step: int = 0,
                 total: int = 0) -> None:
        super().__init__(message)
        self.step = step
        self.total = total


@dataclass(frozen=True)
class PipelineOptions(CatVTONOptions):
    """
    Memory and speed options (the paper's Jetson settings), fixed at construction.

    The fields, their defaults, meanings and checks are the schema's ``catvton.*`` settings
    of :class:`vton_ros.settings.views.CatVTONOptions` (descriptions: config/tryon.yaml,
    ``vton_ros.settings.schema``), plus garment_cache_size: garment latents kept (LRU); 0
    disables the cache.
    """

    garment_cache_size: int = field(default=8, metadata=NOT_A_SETTING)

    @property
    def uses_tiny_vae(self) -> bool:
        """Tell whether the tiny VAE is needed (final decode, previews or encode)."""
        return 'tiny' in (self.decoder, self.preview_decoder, self.encoder)

    def torch_only(self) -> list[str]:
        """Name the options set away from their defaults that only the torch backend runs."""
        return [name for name in self.names() if name not in ONNX_OPTIONS
                and getattr(self, name) != getattr(PipelineOptions, name)]

    def __post_init__(self) -> None:
        """Validate the option values (the schema's checks, then the cache size)."""
        super().__post_init__()
        if not isinstance(self.garment_cache_size, int) or self.garment_cache_size < 0:
            raise ValueError('garment_cache_size must be an int >= 0, got '
                             f'{self.garment_cache_size!r}')


@dataclass(frozen=True)
class TryOnResult:
    """
    Output of one try-on.

    image: (height, width, 3) uint8 RGB. mask: (height, width) uint8, 255 = repainted.
    crop_box: the box of the person frame that ``image`` covers (centre framing: back with
    preprocess.uncrop; person framing, which may pad past the frame: framing.paste).
    timings: seconds per stage, keys :data:`TIMING_KEYS`.
    seed: the seed of the noise (None when the caller passed a generator).
    nan_recovered: the low-precision VAE decode produced NaN/Inf and was redone in fp32.
    nsfw: the safety checker flagged the image (then black); False when it is off.
    garment_cache_hit: the garment latent came from the cache (no VAE encode).
    """

    image: np.ndarray
    mask: np.ndarray
    crop_box: CropBox
    timings: dict
    seed: int | None
    nan_recovered: bool
    nsfw: bool
    garment_cache_hit: bool
