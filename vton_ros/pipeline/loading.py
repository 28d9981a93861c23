"""
Loading CatVTON's models from hub ids or local folders in the published layouts.

Hub ids go through the Hugging Face cache (HF_HUB_OFFLINE honoured); a missing model is a
:class:`~vton_ros.pipeline.weights.ModelNotFoundError` naming where it looked and the fix.
"""

from dataclasses import dataclass
import importlib.util
import json
import logging
import os
from typing import Any

from diffusers import (AutoencoderKL, AutoencoderTiny,  # after the package's shim
                       UNet2DConditionModel)
import torch

from vton_ros.pipeline import attention, weights
from vton_ros.pipeline.forwards import TorchModels
from vton_ros.pipeline.offload import Offloader
from vton_ros.pipeline.options import PipelineOptions

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModels:
    """The models of one CatVTON, loaded on the CPU in ``dtype``; attn1 weights in place."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    scheduler_config: dict
    tiny_vae: AutoencoderTiny | None
    safety_checker: Any
    random_weights: bool
    description: str  # where each part came from, for the log


def load_models(base_model: str, vae: str, attn_ckpt: str, attn_version: str,
                device: torch.device, dtype: torch.dtype, *, safety_checker: bool,
                tiny_vae: str | None, cache_dir: str | None,
                local_files_only: bool) -> LoadedModels:
    """
    Find and load the base UNet, the VAE, CatVTON's attention set and the optional parts.

    tiny_vae: TAESD folder or hub id, or None when no decoder is tiny. Raises
    ModelNotFoundError for missing files, IncompatibleWeightsError for wrong weights.
    """
    version_files = weights.attn_files(attn_version)
    if safety_checker and importlib.util.find_spec('transformers') is None:
        raise ImportError('safety_checker=True needs the transformers package, which is '
                          'not installed: install it or turn the safety checker off')
    lookup = {'cache_dir': cache_dir, 'local_files_only': local_files_only}
    base_dir = weights.resolve_model(base_model, weights.base_model_files(safety_checker),
                                     **lookup)
    vae_dir = weights.resolve_model(vae, weights.vae_files(), **lookup)
    attn_dir = weights.resolve_model(attn_ckpt, version_files, **lookup)
    attn_path = weights.pick_file(attn_dir, version_files.required[0])
    tiny_dir = None
    if tiny_vae is not None:
        try:
            tiny_dir = weights.resolve_model(tiny_vae, weights.tiny_vae_files(), **lookup)
        except weights.ModelNotFoundError as err:
            raise weights.ModelNotFoundError(
                f'{err} (decoder/preview_decoder/encoder tiny: `fetch_weights --tiny-vae` '
                f'fetches {weights.DEFAULT_TINY_VAE}; or set them to full/latent)') from err
    with open(os.path.join(base_dir, 'scheduler', 'scheduler_config.json')) as f:
        scheduler_config = json.load(f)
    unet = UNet2DConditionModel.from_pretrained(base_dir, subfolder='unet', torch_dtype=dtype)
    vae_model = AutoencoderKL.from_pretrained(vae_dir, torch_dtype=dtype)
    tiny_model = (AutoencoderTiny.from_pretrained(tiny_dir, torch_dtype=dtype)
                  if tiny_dir else None)
    n_attn = attention.load_attention_weights(unet, attn_path)
    checker = None
    if safety_checker:
        from vton_ros.pipeline.safety import SafetyChecker
        checker = SafetyChecker.from_folder(base_dir, device, dtype)
    random_weights = any(weights.is_random_test_weights(folder)
                         for folder in (base_dir, vae_dir, attn_dir, tiny_dir) if folder)
    if random_weights:
        _LOG.warning('RANDOM TEST WEIGHTS (%s found): try-on outputs will be noise',
                     weights.RANDOM_MARKER)
    return LoadedModels(unet, vae_model, scheduler_config, tiny_model, checker, random_weights,
                        f'base {base_dir}, vae {vae_dir}, attention {attn_path} '
                        f'({n_attn} tensors)')


def place_models(unet: UNet2DConditionModel, vae: AutoencoderKL,
                 tiny_vae: AutoencoderTiny | None, options: PipelineOptions,
                 device: torch.device, dtype: torch.dtype) -> TorchModels:
    """
    Check the UNet, move the models to the device/dtype with CatVTON's attention; forwards.

    Raises IncompatibleWeightsError for a UNet that is not a 9-channel inpainting one.
    """
    channels = int(vae.config.latent_channels)
    if unet.config.in_channels != 2 * channels + 1:
        raise weights.IncompatibleWeightsError(
            f'the UNet has {unet.config.in_channels} input channels; CatVTON needs an '
            f'inpainting UNet with {2 * channels + 1} (noisy latents, mask, masked '
            'latents)')
    memory_format = (torch.channels_last if options.channels_last
                     else torch.contiguous_format)
    offload = Offloader(options.offload, device)
    offload.reclaim((unet, vae))  # models a previous pipeline streamed from disk
    for model in (unet, vae, tiny_vae):  # the tiny VAE (5 MB) is never offloaded
        if model is not None:
            torch.nn.Module.to(model, device=device if model is tiny_vae else
                               offload.weights_device, dtype=dtype,
                               memory_format=memory_format)
            model.requires_grad_(False)
            model.eval()
    attention.install_catvton_processors(unet, options.attention_slicing)
    if options.vae_slicing:
        vae.enable_slicing()
    if options.vae_tiling:
        vae.enable_tiling()
    # the attn1 modules stay in RAM: AttentionSets swaps their weights in place
    offload.place((unet, vae), resident=attention.self_attention_modules(unet))
    return TorchModels(unet, vae, tiny_vae, offload, dtype,
                       torch.compile(unet) if options.compile_unet else unet)


def load_onnx_models(onnx_dir: str, providers: str, options: PipelineOptions,
                     threads: int) -> Any:
    """
    Open the sessions of an export_onnx folder (an OrtModels) for these options.

    Raises ValueError for options only the torch backend runs and for tiny-VAE options
    without the TAESD graphs; ExportMismatchError for a missing or unreadable export.
    """
    from vton_ros.pipeline.onnx_runtime import OrtModels

    refused = options.torch_only()
    if refused:
        raise ValueError(f'backend onnxruntime cannot honour {", ".join(refused)}: those '
                         'change how torch runs the models, the exported graphs run as '
                         'exported (TensorRT picks its own kernels); leave them at their '
                         'defaults or use backend torch')
    models = OrtModels.load(onnx_dir, providers, threads)
    for name, graph in (('decoder', 'taesd_decoder'), ('preview_decoder', 'taesd_decoder'),
                        ('encoder', 'taesd_encoder')):
        if getattr(options, name) == 'tiny' and not models.has(graph):
            raise ValueError(f'{name} tiny needs {graph}.onnx, which {onnx_dir} lacks: '
                             'export with catvton.tiny_vae found')
    return models
