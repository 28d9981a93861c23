"""
DeepCache-style feature reuse for CatVTON's UNet (Ma et al., CVPR 2024), our own version.

Adjacent denoising steps change the UNet's deep features very little. The UNet is seen as
a chain of layers (each resnet with its attention, each down/upsampler) whose down path
produces the skip tensors ``res[0]`` (conv_in), ``res[1]``, ... and whose up path
consumes them in reverse: the last up layer takes ``res[0]``, the one before it
``res[1]``, and so on. A *full* step runs the whole UNet and keeps the hidden state that
enters the up layer taking ``res[branch]``; the following ``interval - 1`` *shallow* steps
run only the time embedding, the down path up to ``res[branch]`` and the last
``branch + 1`` up layers (from the kept state), then the output head. ``branch`` 0 is the
shallowest path (conv_in, one full-resolution up layer: about a tenth of the FLOPs of the
SD1.5 UNet); the largest branch skips only the mid block.

Written for CatVTON's call: ``encoder_hidden_states=None`` (cross-attention skipped), no
attention mask, class labels, added conditioning or FreeU; other UNets are refused.
No rclpy here.
"""

from typing import Protocol

import torch
from torch import nn

from diffusers import UNet2DConditionModel  # noqa: I100 (after the package's shim)


class UNetSteps(Protocol):
    """What a :class:`DeepCacheUNet` runs: the backend's full and shallow UNet forwards."""

    def check_cache(self, interval: int, branch: int) -> None:
        """Raise ValueError when this backend cannot reuse features at these settings."""

    def unet_full(self, sample: torch.Tensor, timestep: torch.Tensor,
                  branch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole UNet forward: (noise prediction, the features kept at ``branch``)."""

    def unet_shallow(self, sample: torch.Tensor, timestep: torch.Tensor, kept: torch.Tensor,
                     branch: int) -> torch.Tensor:
        """Shallow forward reusing ``kept`` deep features: the noise prediction."""


DOWN_BLOCKS = ('DownBlock2D', 'CrossAttnDownBlock2D')
UP_BLOCKS = ('UpBlock2D', 'CrossAttnUpBlock2D')


def skip_count(unet: UNet2DConditionModel) -> int:
    """Return the number of skip tensors of ``unet`` (conv_in + down layers; SD1.5: 12)."""
    return sum(len(block.resnets) for block in unet.up_blocks)


def check_cache_options(unet: UNet2DConditionModel, interval: int, branch: int) -> None:
    """Raise ValueError (saying what is valid) for a bad interval/branch or an unfit UNet."""
    if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
        raise ValueError(f'cache_interval must be an int >= 1 (1 = off), got {interval!r}')
    if interval == 1:
        return
    deepest = skip_count(unet) - 1
    if not isinstance(branch, int) or isinstance(branch, bool) or not 0 <= branch <= deepest:
        raise ValueError(f'cache_branch must be an int in [0, {deepest}] for this UNet '
                         f'(0 = shallowest), got {branch!r}')
    unfit = [name for name in ('class_embedding', 'add_embedding', 'encoder_hid_proj')
             if getattr(unet, name, None) is not None]
    unfit += [type(block).__name__ for block in unet.down_blocks
              if type(block).__name__ not in DOWN_BLOCKS]
    unfit += [type(block).__name__ for block in unet.up_blocks
              if type(block).__name__ not in UP_BLOCKS or getattr(block, 's1', None)]
    if unfit or unet.config.center_input_sample:
        raise ValueError('feature caching supports plain SD1.5-style UNets only; this one '
                         f'has {", ".join(unfit) or "center_input_sample"}: set '
                         'cache_interval 1')


class DeepCacheUNet:
    """
    Runs one try-on's UNet calls with feature reuse; build a fresh one per try-on.

    models: the backend's forwards (vton_ros.pipeline.forwards): its ``unet_full`` and
    ``unet_shallow`` run the steps, this class decides which and keeps the state.

    Step ``i`` (0-based) is a full forward when ``i % interval == 0``, when nothing is
    kept yet, or when the batch grew since the kept step (guidance switched on); otherwise
    shallow. A kept state of batch 2 ([uncond, cond]) serves a batch-1 (cond only) shallow
    step through its cond row. ``full_steps``/``shallow_steps`` count what ran.
    """

    def __init__(self, models: UNetSteps, interval: int, branch: int) -> None:
        models.check_cache(interval, branch)
        self.models = models
        self.interval = interval
        self.branch = branch
        self.full_steps = 0
        self.shallow_steps = 0
        self._kept: torch.Tensor | None = None

    @torch.inference_mode()
    def __call__(self, sample: torch.Tensor, timestep: torch.Tensor, step: int) -> torch.Tensor:
        """
        Predict the noise of ``sample`` (batch, in_channels, h, w) at ``timestep``.

        step: 0-based index of the denoising step (decides full or shallow). Returns
        (batch, out_channels, h, w) in the UNet's dtype.
        """
        batch = sample.shape[0]
        kept = self._kept
        if kept is None or step % self.interval == 0 or kept.shape[0] < batch:
            self.full_steps += 1
            noise, self._kept = self.models.unet_full(sample, timestep, self.branch)
            return noise
        self.shallow_steps += 1
        return self.models.unet_shallow(sample, timestep, kept[kept.shape[0] - batch:],
                                        self.branch)


def layered_forward(unet: UNet2DConditionModel, sample: torch.Tensor, timestep: torch.Tensor,
                    branch: int, kept: torch.Tensor | None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Run the UNet2DConditionModel forward for CatVTON's call, layer by layer.

    kept None: the full forward; returns (noise, the hidden state entering the up layer
    that takes ``res[branch]``). Else the shallow forward from ``kept``; returns
    (noise, kept). Pure: the ONNX export traces it as the full and shallow graphs.
    """
    n_skips = skip_count(unet)
    entry = n_skips - 1 - branch  # index of the up layer taking res[branch]
    up_factor = 2 ** unet.num_upsamplers
    forward_upsample_size = any(dim % up_factor for dim in sample.shape[-2:])
    emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep), None)
    if unet.time_embed_act is not None:
        emb = unet.time_embed_act(emb)
    hidden = unet.conv_in(sample)
    res = [hidden]
    needed = n_skips if kept is None else branch + 1
    for block in unet.down_blocks:
        for resnet, attn in _layers(block):
            if len(res) >= needed:
                break
            hidden = _run(resnet, attn, hidden, emb)
            res.append(hidden)
        if block.downsamplers is not None and len(res) < needed:
            for downsampler in block.downsamplers:
                hidden = downsampler(hidden)
            res.append(hidden)
    if kept is None and unet.mid_block is not None:
        hidden = unet.mid_block(hidden, emb, **_cross(unet.mid_block))
    state = kept
    layer = 0
    last = len(unet.up_blocks) - 1
    for i, block in enumerate(unet.up_blocks):
        for resnet, attn in _layers(block):
            if layer == entry:
                if kept is None:
                    state = hidden
                else:
                    hidden = kept
            if layer >= entry or kept is None:
                hidden = torch.cat([hidden, res[n_skips - 1 - layer]], dim=1)
                hidden = _run(resnet, attn, hidden, emb)
            layer += 1
        if block.upsamplers is not None and (layer > entry or kept is None):
            size = (res[n_skips - 1 - layer].shape[2:]
                    if i < last and forward_upsample_size else None)
            for upsampler in block.upsamplers:
                hidden = upsampler(hidden, size)
    if unet.conv_norm_out is not None:
        hidden = unet.conv_act(unet.conv_norm_out(hidden))
    return unet.conv_out(hidden), state


def _layers(block: nn.Module) -> list[tuple[nn.Module, nn.Module | None]]:
    """(resnet, attention or None) pairs of a down or up block, in order."""
    attentions = getattr(block, 'attentions', None) or [None] * len(block.resnets)
    return list(zip(block.resnets, attentions))


def _run(resnet: nn.Module, attn: nn.Module | None, hidden: torch.Tensor,
         emb: torch.Tensor) -> torch.Tensor:
    """One layer: the resnet, then its transformer (cross-attention skipped) if any."""
    hidden = resnet(hidden, emb)
    if attn is not None:
        hidden = attn(hidden, encoder_hidden_states=None, return_dict=False)[0]
    return hidden


def _cross(block: nn.Module) -> dict:
    """Keyword arguments of a block with cross-attention (skipped by CatVTON: None)."""
    return {'encoder_hidden_states': None} if getattr(block, 'has_cross_attention',
                                                      False) else {}
