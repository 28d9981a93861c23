"""
CatVTON's attention set-up of the SD1.5-inpainting UNet.

- Cross-attention (attn2) is skipped: :class:`SkipAttnProcessor` returns its input, so the
  transformer block computes ``h + norm2(h)`` there (not an identity), exactly as CatVTON
  was trained. The UNet is then called with ``encoder_hidden_states=None``.
- Self-attention (attn1) weights are CatVTON's, loaded strictly from the state dict of an
  ``nn.ModuleList`` of the UNet's attn1 modules in ``named_modules()`` order.
- :class:`SlicedSelfAttnProcessor` computes self-attention a few heads at a time (the
  paper's attention slicing) while leaving the attn2 skip in place; diffusers'
  ``enable_attention_slicing`` would replace the skip and change the model.
"""

import contextlib
import logging

import torch
from torch import nn
import torch.nn.functional as F

from vton_ros.settings.choices import SDPA_BACKENDS

_LOG = logging.getLogger(__name__)


class SkipAttnProcessor:
    """Attention processor that returns ``hidden_states`` unchanged (CatVTON's attn2)."""

    def __call__(self, attn: nn.Module, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None,
                 temb: torch.Tensor | None = None) -> torch.Tensor:
        """Return the (normalised) block input; the block adds it as a residual."""
        return hidden_states


class SlicedSelfAttnProcessor:
    """
    Self-attention computed ``slice_size`` (batch x head) slices at a time.

    Same result as diffusers' default SDPA processor, with peak attention memory divided by
    ``heads / slice_size``. Supports the plain self-attention of SD1.5 transformer blocks
    (3-D hidden states, no group/spatial norm).
    """

    def __init__(self, slice_size: int) -> None:
        if slice_size < 1:
            raise ValueError(f'attention slice_size must be >= 1, got {slice_size}')
        self.slice_size = slice_size

    def __call__(self, attn: nn.Module, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None,
                 temb: torch.Tensor | None = None) -> torch.Tensor:
        """Self-attention of ``hidden_states`` (B, N, C) -> (B, N, C)."""
        if hidden_states.ndim != 3 or encoder_hidden_states is not None:
            raise ValueError('SlicedSelfAttnProcessor supports self-attention on (B, N, C) '
                             f'only, got {tuple(hidden_states.shape)}')
        batch, tokens, _ = hidden_states.shape
        heads = attn.heads

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, tokens, heads, -1).transpose(1, 2).reshape(
                batch * heads, tokens, -1)

        query = split(attn.to_q(hidden_states))
        key = split(attn.to_k(hidden_states))
        value = split(attn.to_v(hidden_states))
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, tokens, batch)
        out = torch.empty_like(query)
        for start in range(0, batch * heads, self.slice_size):
            stop = start + self.slice_size
            mask = attention_mask[None, start:stop] if attention_mask is not None else None
            # 4-D (1, slice, N, d) inputs: 3-D ones make torch's CPU SDPA fall back to the
            # math kernel (~15x slower at 512x384) instead of its flash kernel
            out[start:stop] = F.scaled_dot_product_attention(
                query[None, start:stop], key[None, start:stop], value[None, start:stop],
                attn_mask=mask, scale=attn.scale)[0]
        out = out.view(batch, heads, tokens, -1).transpose(1, 2).reshape(batch, tokens, -1)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


def self_attention_modules(unet: nn.Module) -> nn.ModuleList:
    """Return the UNet's attn1 modules in ``named_modules()`` order (CatVTON's trainable set)."""
    return nn.ModuleList([module for name, module in unet.named_modules()
                          if name.endswith('attn1')])


# CatVTON saved nn.ModuleList([m for n, m in unet.named_modules() if 'attn1' in n]): the list
# also held each attn1's submodules (to_q, to_k, ...), which safetensors dropped as shared
# tensors, so the published files number the 16 attn1 modules 0, 8, 16, ... 120.
PUBLISHED_STRIDE = 8


def renumber_attention_state(state: dict, stride: int = 1) -> dict:
    """
    Renumber the attn1 modules of an attention state dict 0, stride, 2*stride, ...

    Keys are '<index>.<parameter>'; the indices keep their order (CatVTON's files use
    0, 8, 16, ..., our modules 0, 1, 2, ...). Raises ValueError for keys without an index.
    """
    indices = set()
    for key in state:
        head, _, rest = key.partition('.')
        if not head.isdigit() or not rest:
            raise ValueError(f'attention weight key {key!r} does not start with a module index')
        indices.add(int(head))
    rank = {index: i * stride for i, index in enumerate(sorted(indices))}
    out = {}
    for key, value in state.items():
        head, _, rest = key.partition('.')
        out[f'{rank[int(head)]}.{rest}'] = value
    return out


def resolve_slice_size(attention_slicing: str, heads: int) -> int | None:
    """
    Map an attention_slicing option to a slice size for a module with ``heads`` heads.

    'none': no slicing (None); 'auto': half the heads; 'max': one head at a time.
    """
    sizes = {'none': None, 'auto': max(1, heads // 2), 'max': 1}
    if attention_slicing not in sizes:
        raise ValueError(f'attention_slicing must be one of {", ".join(sizes)}, got '
                         f'{attention_slicing!r}')
    return sizes[attention_slicing]


def check_sdpa_backend(name: str) -> None:
    """Raise ValueError listing the valid names unless ``name`` is an SDPA backend."""
    if name not in SDPA_BACKENDS:
        raise ValueError(f'sdpa_backend must be one of {", ".join(SDPA_BACKENDS)}, got '
                         f'{name!r}')


def sdpa_context(name: str) -> contextlib.AbstractContextManager:
    """
    Context restricting F.scaled_dot_product_attention to one kernel ('auto': no change).

    'flash': FlashAttention (CUDA, and torch's CPU flash kernel), 'efficient': memory-
    efficient attention (CUDA), 'math': the reference implementation. A kernel that cannot
    run the inputs makes the call raise RuntimeError.
    """
    check_sdpa_backend(name)
    if name == 'auto':
        return contextlib.nullcontext()
    from torch.nn.attention import sdpa_kernel, SDPBackend

    backend = {'flash': SDPBackend.FLASH_ATTENTION, 'efficient': SDPBackend.EFFICIENT_ATTENTION,
               'math': SDPBackend.MATH}[name]
    return sdpa_kernel([backend])


def install_catvton_processors(unet: nn.Module, attention_slicing: str = 'none') -> None:
    """
    Install the attn2 skip and the attn1 processor (sliced or diffusers' default).

    Call after every load of UNet weights: diffusers does not save processors.
    """
    from diffusers.models.attention_processor import AttnProcessor2_0

    processors = {}
    n_skip = 0
    for name, module in unet.named_modules():
        if name.endswith('attn2'):
            processors[f'{name}.processor'] = SkipAttnProcessor()
            n_skip += 1
        elif name.endswith('attn1'):
            size = resolve_slice_size(attention_slicing, module.heads)
            processors[f'{name}.processor'] = (AttnProcessor2_0() if size is None
                                               else SlicedSelfAttnProcessor(size))
    other = set(unet.attn_processors) - set(processors)
    if other:
        raise ValueError(f'unexpected attention modules in the UNet: {sorted(other)[:4]}; '
                         'expected an SD1.5-style UNet (attn1/attn2 per transformer block)')
    unet.set_attn_processor(processors)
    _LOG.debug('installed CatVTON processors: %d attn2 skips, attn1 slicing=%s',
               n_skip, attention_slicing)


def load_attention_weights(unet: nn.Module, path: str) -> int:
    """
    Load CatVTON's attn1 weights from ``path`` (safetensors) into ``unet``, strictly.

    The file's module indices (0, 8, ... in the published files) are taken in order; every
    attn1 module must get exactly its tensors. Returns the number of tensors loaded.
    Raises IncompatibleWeightsError on missing or unexpected keys or on shape mismatches
    (nothing is loaded then).
    """
    from safetensors.torch import load_file

    from vton_ros.pipeline.weights import IncompatibleWeightsError

    try:
        state = renumber_attention_state(load_file(path, device='cpu'))
    except ValueError as err:
        raise IncompatibleWeightsError(
            f'CatVTON attention weights {path}: {err}; expected the published layout '
            '(<version>/attention/model.safetensors of zhengchong/CatVTON, keys like '
            '"0.to_q.weight"): fetch it again with fetch_weights') from None
    modules = self_attention_modules(unet)
    expected = modules.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f'{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}'
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f'{len(missing)} missing keys (e.g. {", ".join(missing[:3])})')
        if unexpected:
            parts.append(f'{len(unexpected)} unexpected keys (e.g. {", ".join(unexpected[:3])})')
        if shapes:
            parts.append(f'{len(shapes)} shape mismatches (e.g. {"; ".join(shapes[:2])})')
        raise IncompatibleWeightsError(
            f'CatVTON attention weights {path} do not fit this UNet '
            f'({len(modules)} attn1 modules, {len(expected)} tensors): {", ".join(parts)}. '
            'Use the attention file that matches the base model (SD1.5 inpainting).')
    modules.load_state_dict(state, strict=True)
    return len(state)
