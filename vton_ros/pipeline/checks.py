"""Argument checks of a CatVTON call: ValueError/TypeError that say how to fix it."""

import math

import numpy as np
import torch

from vton_ros.pipeline.options import StepCallback
from vton_ros.pipeline.preprocess import check_image
from vton_ros.settings.choices import MAX_STEPS


def check_call(person: np.ndarray, garment: np.ndarray, mask: np.ndarray,
               num_inference_steps: int, guidance_scale: float, height: int, width: int,
               seed: int | None, generator: torch.Generator | None,
               latents: torch.Tensor | None, eta: float, callback: StepCallback | None, *,
               factor: int, latent_channels: int) -> None:
    """
    Raise ValueError/TypeError (saying how to fix it) for invalid call arguments.

    factor: the VAE's downscale (8); latent_channels: the VAE's latent channels (4).
    """
    check_image(person, 'person')
    check_image(garment, 'garment')
    check_image(mask, 'mask', channels=None)
    if mask.shape != person.shape[:2]:
        raise ValueError(f'mask shape {mask.shape} != person image size {person.shape[:2]}: '
                         'the mask must be computed on (or resized to) the person image')
    for name, value in (('height', height), ('width', width)):
        if not _is_int(value) or value < factor or value % factor:
            raise ValueError(f'{name} must be a positive multiple of {factor}, got {value!r} '
                             f'(e.g. 512x384 or 1024x768)')
    if not _is_int(num_inference_steps) or not 1 <= num_inference_steps <= MAX_STEPS:
        raise ValueError(f'num_inference_steps must be an int in [1, {MAX_STEPS}], got '
                         f'{num_inference_steps!r} (10-20 with dpmpp_2m, 50 with ddim)')
    if not _is_real(guidance_scale) or not 0.0 <= guidance_scale < math.inf:
        raise ValueError(f'guidance_scale must be a finite number >= 0, got '
                         f'{guidance_scale!r} (2.5 is typical; <= 1 disables guidance)')
    if not _is_real(eta) or not 0.0 <= eta <= 1.0:
        raise ValueError(f'eta must be in [0, 1], got {eta!r} (DDIM only; 0 = deterministic)')
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise ValueError(f'seed must be an int >= 0 or None, got {seed!r}')
    if generator is not None:
        if seed is not None:
            raise ValueError('pass either seed or generator, not both')
        if not isinstance(generator, torch.Generator):
            raise TypeError(f'generator must be a torch.Generator, got '
                            f'{type(generator).__name__}')
    if latents is not None:
        shape = (1, latent_channels, 2 * height // factor, width // factor)
        if not isinstance(latents, torch.Tensor) or not latents.is_floating_point():
            raise TypeError('latents must be a floating-point torch.Tensor')
        if tuple(latents.shape) != shape:
            raise ValueError(f'latents must have shape {shape} (person and garment halves '
                             f'stacked on height) for {height}x{width}, got '
                             f'{tuple(latents.shape)}')
    if callback is not None and not callable(callback):
        raise TypeError(f'callback must be callable, got {type(callback).__name__}')


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, bool) and not math.isnan(value)
