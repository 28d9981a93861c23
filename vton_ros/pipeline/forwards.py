"""
The one interface between the try-on loop and the models: torch modules or ORT sessions.

The pipeline calls only these forwards; its loop, schedulers, guidance, DeepCache
decisions, garment cache, previews, cancel and timings stay above them, the same for
both backends. Latents are the pipeline's scaled latents; images (1, 3, H, W) in [-1, 1].

- ``unet(sample, t)``: noise of (B, 9, 2h, w), B 1 or 2.
- ``unet_full(sample, t, branch)`` -> (noise, kept) and ``unet_shallow(sample, t, kept,
  branch)``: DeepCache's full and shallow steps (vton_ros.pipeline.deepcache).
- ``encode(image, tiny)`` / ``decode(latents, tiny)``: the VAE or the tiny VAE (TAESD).
- ``decode_fp32(latents)``: the VAE decode in fp32 (the NaN/Inf fallback).
- ``check_cache(interval, branch)``: ValueError for DeepCache options it cannot run;
  ``check_size(height, width)``: ValueError for a try-on size it cannot run.

:class:`TorchModels` is the torch backend; vton_ros.pipeline.onnx_runtime.OrtModels the
onnxruntime one. No rclpy here.
"""

from typing import Protocol

import torch
from torch import nn

from vton_ros.pipeline.deepcache import check_cache_options, layered_forward, UNetSteps
from vton_ros.pipeline.offload import Offloader


class Forwards(UNetSteps, Protocol):
    """What the pipeline needs of a backend (see the module docstring)."""

    dtype: torch.dtype

    def unet(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor: ...

    def encode(self, image: torch.Tensor, tiny: bool = False) -> torch.Tensor: ...

    def decode(self, latents: torch.Tensor, tiny: bool = False) -> torch.Tensor: ...

    def decode_fp32(self, latents: torch.Tensor) -> torch.Tensor: ...

    def check_size(self, height: int, width: int) -> None: ...


class TorchModels:
    """
    The torch backend: the UNet, VAE and optional tiny VAE, placed by an Offloader.

    unet_forward: the UNet or its torch.compile wrapper (plain steps only).
    """

    def __init__(self, unet: nn.Module, vae: nn.Module, tiny_vae: nn.Module | None,
                 offload: Offloader, dtype: torch.dtype,
                 unet_forward: nn.Module | None = None) -> None:
        self.unet_module = unet
        self.vae = vae
        self.tiny_vae = tiny_vae
        self.offload = offload
        self.dtype = dtype
        self._unet_forward = unet_forward or unet
        self._scale = float(vae.config.scaling_factor)

    def unet(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """Noise prediction of CatVTON's call (cross-attention skipped)."""
        self.offload.use(self.unet_module)
        return self._unet_forward(sample, timestep, encoder_hidden_states=None,
                                  return_dict=False)[0]

    def unet_full(self, sample: torch.Tensor, timestep: torch.Tensor,
                  branch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the DeepCache full step: (noise, deep state kept at the branch)."""
        self.offload.use(self.unet_module)
        return layered_forward(self.unet_module, sample, timestep, branch, None)

    def unet_shallow(self, sample: torch.Tensor, timestep: torch.Tensor, kept: torch.Tensor,
                     branch: int) -> torch.Tensor:
        """Run the DeepCache shallow step from the kept state."""
        self.offload.use(self.unet_module)
        return layered_forward(self.unet_module, sample, timestep, branch, kept)[0]

    def encode(self, image: torch.Tensor, tiny: bool = False) -> torch.Tensor:
        """VAE posterior mean times the scaling factor, or the TAESD latents."""
        if tiny:
            return self.tiny_vae.encode(image).latents
        self.offload.use(self.vae)
        return self.vae.encode(image).latent_dist.mean * self._scale

    def decode(self, latents: torch.Tensor, tiny: bool = False) -> torch.Tensor:
        """Scaled latents -> image (the VAE divides by its scaling factor first)."""
        if tiny:
            return self.tiny_vae.decode(latents.to(self.dtype)).sample
        self.offload.use(self.vae)
        return self.vae.decode((latents / self._scale).to(self.dtype)).sample

    def decode_fp32(self, latents: torch.Tensor) -> torch.Tensor:
        """Decode with the VAE decoder temporarily upcast to fp32 (restored afterwards)."""
        modules = [m for m in (self.vae.post_quant_conv, self.vae.decoder) if m is not None]
        try:
            for module in modules:
                module.float()
            return self.vae.decode((latents / self._scale).float()).sample
        finally:
            for module in modules:
                module.to(self.dtype)

    def check_cache(self, interval: int, branch: int) -> None:
        """Raise ValueError (valid values) for DeepCache options this UNet cannot run."""
        check_cache_options(self.unet_module, interval, branch)

    def check_size(self, height: int, width: int) -> None:
        """Accept any size (the torch models are not tied to one)."""
