"""
Optional NSFW safety checker of the SD1.5 base model (needs the transformers package).

Off unless asked for: the base model's ``safety_checker/`` and ``feature_extractor/``
folders are then loaded with diffusers' StableDiffusionSafetyChecker and transformers'
CLIPImageProcessor. A flagged image is replaced with black, as diffusers does.
"""

import importlib.util
import logging
import os

import numpy as np
import torch

_LOG = logging.getLogger(__name__)


class SafetyChecker:
    """CLIP-based NSFW check of the try-on result."""

    def __init__(self, checker: torch.nn.Module, processor, device: torch.device,
                 dtype: torch.dtype) -> None:
        self.checker = checker
        self.processor = processor
        self.device = device
        self.dtype = dtype

    @classmethod
    def from_folder(cls, folder: str, device: torch.device,
                    dtype: torch.dtype) -> 'SafetyChecker':
        """Load from a base-model folder with safety_checker/ and feature_extractor/."""
        if importlib.util.find_spec('transformers') is None:
            raise ImportError('the safety checker needs the transformers package, which is '
                              'not installed: pip install transformers (pinned next to torch), '
                              'or run with the safety checker off')
        from diffusers.pipelines.stable_diffusion.safety_checker import (
            StableDiffusionSafetyChecker)
        from transformers import CLIPImageProcessor

        checker = StableDiffusionSafetyChecker.from_pretrained(
            os.path.join(folder, 'safety_checker'), torch_dtype=dtype)
        processor = CLIPImageProcessor.from_pretrained(os.path.join(folder, 'feature_extractor'))
        checker.to(device).eval()
        _LOG.info('safety checker loaded from %s', folder)
        return cls(checker, processor, device, dtype)

    @torch.inference_mode()
    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, bool]:
        """Check an HxWx3 uint8 RGB image; returns (image or black image, nsfw flag)."""
        clip_input = self.processor(images=[image], return_tensors='pt').pixel_values
        clip_input = clip_input.to(self.device, self.dtype)
        images = image[None].astype(np.float32) / 255.0
        _, flags = self.checker(images=images, clip_input=clip_input)
        nsfw = bool(flags[0])
        if nsfw:
            _LOG.warning('safety checker flagged the try-on result; returning a black image')
            return np.zeros_like(image), True
        return image, False
