"""
Offloading model weights off a small GPU between (or during) their use.

Modes (``catvton.offload``):

- ``none``: every model lives on the execution device (fastest).
- ``model``: weights live in host RAM; a model is moved to the GPU when its stage starts
  and the previous one back to the host (VAE for encode, UNet for denoise, the decoder for
  decode), so the GPU holds one model at a time (the UNet, ~1.7 GB in fp16/bf16).
- ``sequential``: accelerate's ``cpu_offload`` hooks on every module: weights stay in host
  RAM and each layer's weights are copied to the GPU for its own forward only, so the GPU
  holds activations and one layer (slow: every step re-copies the UNet).

On a CPU-only machine the weights are already in host RAM and there is no slower tier to
move them to, so every mode runs like ``none`` (logged once): offloading lowers GPU
memory, not host RAM. No rclpy here.
"""

from collections.abc import Iterable
import logging

import torch
from torch import nn

_LOG = logging.getLogger(__name__)

OFFLOAD_MODES = ('none', 'model', 'sequential')


def check_offload_mode(mode: str) -> None:
    """Raise ValueError listing the valid modes unless ``mode`` is one."""
    if mode not in OFFLOAD_MODES:
        raise ValueError(f'offload must be one of {", ".join(OFFLOAD_MODES)}, got {mode!r}')


class Offloader:
    """
    Places the pipeline's models according to an offload mode.

    Call :meth:`place` once per model at construction and :meth:`use` before each stage.
    ``active`` is False when the mode is 'none' or the device is the CPU.
    """

    def __init__(self, mode: str, device: torch.device) -> None:
        check_offload_mode(mode)
        self.mode = mode
        self.device = device
        self.active = mode != 'none' and device.type != 'cpu'
        self._current: nn.Module | None = None
        if mode != 'none' and not self.active:
            _LOG.info('offload %s: no-op on %s (the weights are already in host memory; '
                      'offloading lowers GPU memory only)', mode, device)

    @property
    def weights_device(self) -> torch.device:
        """Device the weights are placed on at construction (the host when active)."""
        return torch.device('cpu') if self.active else self.device

    def place(self, models: Iterable[nn.Module]) -> None:
        """Attach the offload hooks (sequential); the models must sit on weights_device."""
        if not (self.active and self.mode == 'sequential'):
            return
        from accelerate import cpu_offload

        for model in models:
            cpu_offload(model, execution_device=self.device)

    def use(self, model: nn.Module) -> None:
        """Make ``model`` ready to run (mode 'model': move it in, the previous one out)."""
        if not (self.active and self.mode == 'model') or self._current is model:
            return
        if self._current is not None:
            self._current.to('cpu')
        model.to(self.device)
        self._current = model
