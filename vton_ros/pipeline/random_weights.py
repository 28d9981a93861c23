"""
RANDOM model weights with the real CatVTON architectures, for tests and benchmarks.

Nothing here is a trained model. Two sizes:

- tiny (UNet block_out_channels (32, 64), 4-level VAE with 8-32 channels): a full 10-step
  try-on at 64x48 px takes tens of milliseconds on a CPU; written to disk in the real
  layouts by ``make_test_weights``.
- full size (SD1.5-inpainting UNet, 859.5 M parameters; SD VAE, 83.7 M): same shapes and
  FLOPs as the real models, built directly in the target dtype (no fp32 copy in RAM),
  for timing the pipeline without the real weights.

Every builder logs a warning saying the weights are random.
"""

import logging

from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel  # after the shim
import torch

_LOG = logging.getLogger(__name__)


def sd15_inpaint_unet_config() -> dict:
    """Return the UNet2DConditionModel config of SD1.5 inpainting (9 input channels)."""
    return {
        'sample_size': 64,
        'in_channels': 9,
        'out_channels': 4,
        'down_block_types': ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D',
                             'CrossAttnDownBlock2D', 'DownBlock2D'],
        'up_block_types': ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D',
                           'CrossAttnUpBlock2D'],
        'block_out_channels': [320, 640, 1280, 1280],
        'layers_per_block': 2,
        'cross_attention_dim': 768,
        'attention_head_dim': 8,
        'norm_num_groups': 32,
        'norm_eps': 1e-5,
        'act_fn': 'silu',
        'flip_sin_to_cos': True,
        'freq_shift': 0,
        'downsample_padding': 1,
        'mid_block_scale_factor': 1,
        'center_input_sample': False,
    }


def sd_vae_config() -> dict:
    """Return the AutoencoderKL config of the SD VAE (sd-vae-ft-mse), scaling factor 0.18215."""
    return {
        'in_channels': 3,
        'out_channels': 3,
        'down_block_types': ['DownEncoderBlock2D'] * 4,
        'up_block_types': ['UpDecoderBlock2D'] * 4,
        'block_out_channels': [128, 256, 512, 512],
        'layers_per_block': 2,
        'latent_channels': 4,
        'norm_num_groups': 32,
        'act_fn': 'silu',
        'sample_size': 256,
        'scaling_factor': 0.18215,
    }


def sd15_scheduler_config() -> dict:
    """Return the scheduler_config.json of SD1.5 inpainting (PNDM, scaled-linear betas)."""
    return {
        '_class_name': 'PNDMScheduler',
        '_diffusers_version': '0.6.0',
        'beta_start': 0.00085,
        'beta_end': 0.012,
        'beta_schedule': 'scaled_linear',
        'num_train_timesteps': 1000,
        'set_alpha_to_one': False,
        'skip_prk_steps': True,
        'steps_offset': 1,
        'trained_betas': None,
        'clip_sample': False,
    }


def tiny_unet_config() -> dict:
    """Return the config of a tiny 9-channel UNet with 4 self-attention modules (tests only)."""
    return {
        'sample_size': 8,
        'in_channels': 9,
        'out_channels': 4,
        'down_block_types': ['DownBlock2D', 'CrossAttnDownBlock2D'],
        'up_block_types': ['CrossAttnUpBlock2D', 'UpBlock2D'],
        'block_out_channels': [32, 64],
        'layers_per_block': 1,
        'cross_attention_dim': 32,
        'attention_head_dim': [2, 4],
        'norm_num_groups': 32,
    }


def tiny_vae_config() -> dict:
    """Return the SD VAE config shrunk: same 4 levels, 8-32 channels (tests)."""
    return dict(sd_vae_config(), block_out_channels=[8, 16, 32, 32], layers_per_block=1,
                norm_num_groups=8, sample_size=64)


def taesd_config(tiny: bool = False) -> dict:
    """
    Return the AutoencoderTiny config of TAESD (madebyollin/taesd, for SD1.x latents).

    tiny: 8 channels and one block per level instead of 64 and (1, 3, 3, 3) (tests).
    """
    channels, blocks = ([8] * 4, [1] * 4) if tiny else ([64] * 4, None)
    return {
        'in_channels': 3,
        'out_channels': 3,
        'encoder_block_out_channels': channels,
        'decoder_block_out_channels': channels,
        'num_encoder_blocks': blocks or [1, 3, 3, 3],
        'num_decoder_blocks': blocks or [3, 3, 3, 1],
        'act_fn': 'relu',
        'latent_channels': 4,
        'upsampling_scaling_factor': 2,
        'latent_magnitude': 3,
        'latent_shift': 0.5,
        'scaling_factor': 1.0,
    }


def random_tiny_vae(dtype: torch.dtype | str = 'fp32', seed: int = 0,
                    full_size: bool = False) -> AutoencoderTiny:
    """Build a RANDOM TAESD-shaped AutoencoderTiny (full_size: the real 2.4 M params)."""
    if isinstance(dtype, str):
        from vton_ros.pipeline.device import resolve_dtype
        dtype = resolve_dtype(dtype, torch.device('cpu'))
    return build_random(AutoencoderTiny, taesd_config(tiny=not full_size), dtype, seed)


def build_random(model_cls: type, config: dict, dtype: torch.dtype = torch.float32,
                 seed: int = 0) -> torch.nn.Module:
    """
    Build ``model_cls(**config)`` with seeded RANDOM weights directly in ``dtype`` on CPU.

    The model is created on the meta device, materialised in ``dtype`` and initialised with
    PyTorch's default layer initialisation, so peak RAM is one copy in ``dtype``. The global
    RNG state is restored afterwards.
    """
    with torch.device('meta'):
        model = model_cls(**config)
    torch.nn.Module.to(model, dtype=dtype)
    model.to_empty(device='cpu')
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            reset = getattr(module, 'reset_parameters', None)
            if module is not model and callable(reset):
                reset()
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    _LOG.warning('built %s with RANDOM weights (%.1f M params, %s, seed %d): '
                 'not a trained model', model_cls.__name__, n_params / 1e6, dtype, seed)
    return model


def random_tiny_components(seed: int = 0) -> tuple[UNet2DConditionModel, AutoencoderKL, dict]:
    """Build tiny RANDOM (unet, vae, scheduler_config) in fp32 for tests."""
    unet = build_random(UNet2DConditionModel, tiny_unet_config(), torch.float32, seed)
    vae = build_random(AutoencoderKL, tiny_vae_config(), torch.float32, seed + 1)
    return unet, vae, sd15_scheduler_config()


def random_full_size_components(dtype: torch.dtype | str = 'bf16', seed: int = 0
                                ) -> tuple[UNet2DConditionModel, AutoencoderKL, dict]:
    """
    Full-size RANDOM (unet, vae, scheduler_config) with the real CatVTON shapes.

    dtype: 'fp32' | 'fp16' | 'bf16' or a torch dtype; built directly in it on CPU
    (bf16: ~1.9 GB for the UNet). For timing only: the outputs are noise. Pass the result
    to :meth:`CatVTONPipeline.from_components`.
    """
    if isinstance(dtype, str):
        from vton_ros.pipeline.device import resolve_dtype
        dtype = resolve_dtype(dtype, torch.device('cpu'))
    _LOG.warning('building FULL-SIZE RANDOM CatVTON weights (%s): for benchmarks only, '
                 'the try-on output will be noise', dtype)
    unet = build_random(UNet2DConditionModel, sd15_inpaint_unet_config(), dtype, seed)
    vae = build_random(AutoencoderKL, sd_vae_config(), dtype, seed + 1)
    return unet, vae, sd15_scheduler_config()
