"""
Compute floor: FLOPs of each model forward, counted on the meta device (no real compute).

:func:`count_flops` runs a function under ``torch.utils.flop_counter.FlopCounterMode``,
which counts matrix multiplications, convolutions and attention at 2 FLOPs per
multiply-add (norms, activations and element-wise ops are not counted: the floor is a lower
bound). Models are rebuilt from their configs under ``torch.device('meta')``: shapes only,
no memory, a whole SD1.5 UNet forward is counted in well under a second.

Reference (SD1.5-inpainting UNet, 512x384 person+garment pair, latent 1x9x128x48): 1249
GFLOP per forward; SD VAE encode of a 512x384 image 831 GFLOP, decode 1879 GFLOP.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from diffusers import AutoencoderKL, UNet2DConditionModel  # after the package's shim
import torch
from torch.utils.flop_counter import FlopCounterMode

from vton_ros.pipeline import attention

FLOP_METHOD = ('torch.utils.flop_counter.FlopCounterMode on the meta device: matmul, conv '
               'and attention at 2 FLOPs per multiply-add; norms/activations not counted')


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Return the FLOPs counted while running ``fn(*args, **kwargs)`` (no autograd)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


def meta_model(model_cls: type, config: dict[str, Any]) -> torch.nn.Module:
    """Build ``model_cls.from_config(config)`` on the meta device (no weights, no memory)."""
    with torch.device('meta'):
        model = model_cls.from_config(dict(config))
    return model.eval()


@dataclass(frozen=True)
class CatVTONFlops:
    """
    FLOPs of one forward of each CatVTON model at one output size.

    unet_forward: one UNet call at latent (batch, 9, 2*height/8, width/8) (batch 2 with
    classifier-free guidance); vae_encode_image: encoding one (1, 3, height, width) image;
    vae_decode: decoding the person half (1, 4, height/8, width/8).
    """

    unet_forward: int
    unet_batch: int
    vae_encode_image: int
    vae_decode: int

    def stage_flops(self, steps: int, encoded_images: int = 2) -> dict[str, int]:
        """Return FLOPs per stage: vae_encode (``encoded_images``), denoise, vae_decode."""
        return {'vae_encode': encoded_images * self.vae_encode_image,
                'denoise': steps * self.unet_forward,
                'vae_decode': self.vae_decode}


def catvton_flops(unet_config: dict[str, Any], vae_config: dict[str, Any], height: int,
                  width: int, cfg: bool) -> CatVTONFlops:
    """
    Count the CatVTON model forwards at ``height`` x ``width`` pixels.

    unet_config/vae_config: the diffusers configs (e.g. ``pipe.unet.config``). The UNet gets
    CatVTON's processors (cross-attention skipped) and ``encoder_hidden_states=None``, as in
    the pipeline. cfg: classifier-free guidance on (UNet batch 2).
    """
    unet = meta_model(UNet2DConditionModel, unet_config)
    attention.install_catvton_processors(unet)
    vae = meta_model(AutoencoderKL, vae_config)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if height % factor or width % factor:
        raise ValueError(f'height/width must be multiples of {factor}, got {height}x{width}')
    channels = int(vae.config.latent_channels)
    batch = 2 if cfg else 1
    latent = torch.empty(batch, unet.config.in_channels, 2 * height // factor, width // factor,
                         device='meta')
    timestep = torch.tensor(500, device='meta')
    unet_flops = count_flops(unet, latent, timestep, encoder_hidden_states=None,
                             return_dict=False)
    image = torch.empty(1, vae.config.in_channels, height, width, device='meta')
    encode = count_flops(lambda x: vae.encode(x).latent_dist.mean, image)
    person = torch.empty(1, channels, height // factor, width // factor, device='meta')
    decode = count_flops(lambda z: vae.decode(z).sample, person)
    return CatVTONFlops(unet_flops, batch, encode, decode)


def segmentation_flops(height: int, width: int, encoder: str = 'resnet50') -> int:
    """Return the FLOPs of one smp U-Net (agnostic mask) forward on a (1, 3, H, W) input."""
    from vton_ros.pipeline.segmentation import build_model, SegmentationConfig

    with torch.device('meta'):
        model = build_model(SegmentationConfig(encoder=encoder, height=height, width=width))
    model.eval()
    return count_flops(model, torch.empty(1, 3, height, width, device='meta'))


def gflops_per_s(flops: int | float, seconds: float) -> float | None:
    """Achieved GFLOP/s, or None when the time is not positive."""
    if seconds <= 0:
        return None
    return flops / seconds / 1e9
