"""
What a CatVTON call takes and gives: memory/speed options, the result, cancellation.

Shared by :mod:`vton_ros.pipeline.catvton` and its callers; no model code here.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from vton_ros.pipeline import attention
from vton_ros.pipeline.attention import check_sdpa_backend
from vton_ros.pipeline.offload import check_offload_mode
from vton_ros.pipeline.preprocess import CropBox
from vton_ros.settings.choices import DECODERS, ENCODERS, PREVIEW_DECODERS

TIMING_KEYS = ('preprocess', 'vae_encode', 'denoise', 'vae_decode', 'safety_check', 'total')

StepCallback = Callable[[int, int, float, torch.Tensor], bool | None]


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
class PipelineOptions:
    """
    Memory and speed options (the paper's Jetson settings), fixed at construction.

    attention_slicing: None/'off', 'auto' (half the heads per slice), 'max' (one head) or
      heads per slice; keeps CatVTON's cross-attention skip.
    vae_slicing / vae_tiling: diffusers' VAE slicing and tiling.
    channels_last: UNet and VAE weights in channels-last memory format.
    compile_unet: wrap the UNet forward in torch.compile (first call is slow; not used on
      the shallow/full steps of feature caching, which call the UNet's blocks).
    garment_cache_size: garment latents kept (LRU); 0 disables the cache.
    decoder: 'full' (the VAE) or 'tiny' (the TAESD decoder: ~20x fewer FLOPs, approximate).
    preview_decoder: 'latent' (linear latent colours, latent size) or 'tiny' (TAESD images
      at twice the latent size).
    encoder: 'full' (the VAE encoder) or 'tiny' (the TAESD encoder for the person and
      garment latents: ~10x fewer FLOPs, approximate).
    offload: 'none' | 'model' | 'sequential' (see vton_ros.pipeline.offload).
    sdpa_backend: scaled-dot-product attention kernel of the UNet: 'auto' (torch picks),
      'flash', 'efficient' or 'math' (see vton_ros.pipeline.attention.sdpa_context).
    """

    attention_slicing: int | str | None = None
    vae_slicing: bool = False
    vae_tiling: bool = False
    channels_last: bool = False
    compile_unet: bool = False
    garment_cache_size: int = 8
    decoder: str = 'full'
    preview_decoder: str = 'latent'
    offload: str = 'none'
    sdpa_backend: str = 'auto'
    encoder: str = 'full'

    @property
    def uses_tiny_vae(self) -> bool:
        """Tell whether the tiny VAE is needed (final decode, previews or encode)."""
        return 'tiny' in (self.decoder, self.preview_decoder, self.encoder)

    def torch_only(self) -> list[str]:
        """Name the options set away from their defaults that only the torch backend runs."""
        return [name for name in ('attention_slicing', 'vae_slicing', 'vae_tiling',
                                  'channels_last', 'compile_unet', 'offload', 'sdpa_backend')
                if getattr(self, name) != getattr(PipelineOptions, name)]

    def __post_init__(self) -> None:
        """Validate the option values."""
        attention.resolve_slice_size(self.attention_slicing, 8)
        for name, valid in (('decoder', DECODERS), ('preview_decoder', PREVIEW_DECODERS),
                            ('encoder', ENCODERS)):
            if getattr(self, name) not in valid:
                raise ValueError(f'{name} must be one of {", ".join(valid)}, got '
                                 f'{getattr(self, name)!r}')
        check_offload_mode(self.offload)
        check_sdpa_backend(self.sdpa_backend)
        if not isinstance(self.garment_cache_size, int) or self.garment_cache_size < 0:
            raise ValueError('garment_cache_size must be an int >= 0, got '
                             f'{self.garment_cache_size!r}')


@dataclass(frozen=True)
class TryOnResult:
    """
    Output of one try-on.

    image: (height, width, 3) uint8 RGB. mask: (height, width) uint8, 255 = repainted.
    crop_box: the crop of the person frame that ``image`` covers (for preprocess.uncrop).
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
