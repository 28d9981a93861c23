"""
Offloading model weights off a small GPU, or out of host RAM, between (or during) their use.

Modes (``catvton.offload``):

- ``none``: every model lives on the execution device (fastest).
- ``model``: weights live in host RAM; a model is moved to the GPU when its stage starts
  and the previous one back to the host (VAE for encode, UNet for denoise, the decoder for
  decode), so the GPU holds one model at a time (the UNet, ~1.7 GB in fp16/bf16).
- ``sequential``: on a GPU, accelerate's ``cpu_offload`` hooks on every module: weights
  stay in host RAM and each layer's weights are copied to the GPU for its own forward only,
  so the GPU holds activations and one layer (slow: every step re-copies the UNet). On the
  CPU, the UNet's and VAE's weights are written once to an anonymous temporary file
  (:class:`DiskWeights`, in ``tempfile.gettempdir()``, i.e. ``TMPDIR``; unlinked from the
  start, so nothing is left behind even after a crash) and taken out of RAM (their
  parameters become 'meta' tensors); each module reads its own tensors back (plain reads
  of the file into an anonymous mapping, unmapped when the tensors are dropped, so no
  file pages or freed heap stay in the RSS) before its forward and drops them after.
  Host RAM then holds activations and one layer; every forward re-reads the weights
  (from the page cache when RAM allows). Results are identical to ``none``. The caller's
  entry point should also fix glibc's mmap threshold for the process
  (:func:`pin_mmap_threshold`; tryon_server and vton_bench do). The models are
  still loaded whole into RAM once, before they are moved to the file (loading peak).

On a CPU-only machine ``model`` runs like ``none`` (logged once): the weights are already in
host RAM and moving whole models to disk per stage would not lower the peak (the UNet is
the peak). No rclpy here.
"""

from collections.abc import Iterable
import ctypes
import logging
import math
import mmap
import os
import tempfile
from typing import NamedTuple

import torch
from torch import nn

from vton_ros.settings.choices import OFFLOAD_MODES

_LOG = logging.getLogger(__name__)

_DISK_ATTR = '_vton_disk_weights'  # set on a model whose weights live in a DiskWeights
_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
_ALIGN = 64  # bytes: every tensor starts at a multiple of this in the file and in RAM


def check_offload_mode(mode: str) -> None:
    """Raise ValueError listing the valid modes unless ``mode`` is one."""
    if mode not in OFFLOAD_MODES:
        raise ValueError(f'offload must be one of {", ".join(OFFLOAD_MODES)}, got {mode!r}')


class _Slot(NamedTuple):
    """Where one tensor lies in the file (offset from its module's span) and its layout."""

    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype
    is_param: bool


def _dense(tensor: torch.Tensor) -> bool:
    """Whether ``tensor``'s elements fill one contiguous span of memory (any dense layout)."""
    return (tensor.is_contiguous() or tensor.is_contiguous(memory_format=torch.channels_last)
            or tensor.is_contiguous(memory_format=torch.channels_last_3d))


def release_freed_memory() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``; a no-op elsewhere)."""
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


def pin_mmap_threshold(nbytes: int = 128 * 1024) -> bool:
    """
    Fix glibc's mmap threshold (process-wide; False where there is no glibc).

    Freeing the weights raises glibc's dynamic threshold to ~32 MB, after which activations
    come from the heap, whose freed pages stay resident: the try-on peak then grows by
    the size of the weights again. A fixed threshold keeps large blocks in their own
    mappings, returned to the OS when freed.
    """
    try:
        return bool(ctypes.CDLL('libc.so.6').mallopt(_M_MMAP_THRESHOLD, nbytes))
    except (OSError, AttributeError):
        return False


class DiskWeights:
    """
    A model's weights in an anonymous temporary file, streamed in per module forward.

    Every module with its own parameters or buffers (outside ``resident``) gets its tensors
    written to the file and replaced by 'meta' tensors of the same shape and dtype; a
    forward pre-hook reads them back (bit-exact, same strides) and a forward hook puts the
    'meta' placeholders back. A placeholder's dtype is honoured on reading (``module.float()``
    between forwards works). :meth:`restore` puts every tensor back in RAM and removes the
    hooks. The file is unlinked on creation and its space freed when this object is closed
    or collected.
    """

    def __init__(self, model: nn.Module, resident: Iterable[nn.Module] = (),
                 directory: str | None = None) -> None:
        keep = {id(m) for r in resident for m in r.modules()}
        self._file = tempfile.TemporaryFile(dir=directory, prefix='vton_offload_')
        self._model = model
        self._slots: dict[nn.Module, dict[str, _Slot]] = {}
        self._spans: dict[nn.Module, tuple[int, int]] = {}  # module: (file offset, bytes)
        self._handles = []
        self.nbytes = 0
        for module in model.modules():
            if id(module) in keep:
                continue
            slots = self._write_module(module)
            if slots:
                self._slots[module] = slots
                self._handles += [
                    module.register_forward_pre_hook(self._load_hook),
                    module.register_forward_hook(self._drop_hook, always_call=True)]
        self._file.flush()
        setattr(model, _DISK_ATTR, self)

    def _write_module(self, module: nn.Module) -> dict[str, _Slot]:
        """Append the module's own tensors (each 64-byte aligned), drop them; return slots."""
        slots = {}
        start = self.nbytes
        tensors = [(n, p, True) for n, p in module._parameters.items() if p is not None]
        tensors += [(n, b, False) for n, b in module._buffers.items() if b is not None]
        for name, tensor, is_param in tensors:
            data = tensor.detach()
            if data.device.type != 'cpu':
                raise ValueError(f'disk offload needs CPU tensors, {name} is on {data.device}')
            if not _dense(data):
                data = data.contiguous()
            pad = -self.nbytes % _ALIGN
            self._file.write(bytes(pad))
            self.nbytes += pad
            flat = data.as_strided((data.numel(),), (1,))
            self._file.write(memoryview(flat.view(torch.uint8).numpy()))
            slots[name] = _Slot(self.nbytes - start, tuple(data.shape), tuple(data.stride()),
                                data.dtype, is_param)
            self.nbytes += flat.numel() * flat.element_size()
        if slots:
            self._spans[module] = (start, self.nbytes - start)
            self._drop(module, slots)
        return slots

    @staticmethod
    def _set(module: nn.Module, name: str, slot: _Slot, value: torch.Tensor) -> None:
        if slot.is_param:
            module._parameters[name] = nn.Parameter(value, requires_grad=False)
        else:
            module._buffers[name] = value

    def _drop(self, module: nn.Module, slots: dict[str, _Slot]) -> None:
        for name, slot in slots.items():
            current = (module._parameters if slot.is_param else module._buffers)[name]
            meta = torch.empty_strided(slot.shape, slot.stride, dtype=current.dtype,
                                       device='meta')
            self._set(module, name, slot, meta)

    def _read(self, module: nn.Module) -> torch.Tensor:
        """
        Read the module's span of the file into a fresh anonymous mapping (uint8 tensor).

        The mapping is unmapped as soon as the last tensor viewing it is dropped, so the
        memory goes back to the OS after each forward (heap memory could stay resident).
        """
        start, length = self._spans[module]
        buffer = mmap.mmap(-1, max(length, 1))
        view = memoryview(buffer)[:length]
        done = 0
        while done < length:
            got = os.preadv(self._file.fileno(), [view[done:]], start + done)
            if got <= 0:
                raise OSError(f'offload file truncated at byte {start + done}')
            done += got
        view.release()
        return torch.frombuffer(buffer, dtype=torch.uint8)

    def _load(self, module: nn.Module) -> None:
        span = self._read(module)
        for name, slot in self._slots[module].items():
            current = (module._parameters if slot.is_param else module._buffers)[name]
            numel = math.prod(slot.shape)
            size = numel * slot.dtype.itemsize
            tensor = span[slot.offset:slot.offset + size].view(slot.dtype)
            tensor = tensor.as_strided(slot.shape, slot.stride)
            if current.dtype != slot.dtype:  # e.g. module.float() between forwards
                tensor = tensor.to(current.dtype)
            self._set(module, name, slot, tensor)

    def _load_hook(self, module: nn.Module, args: tuple) -> None:
        self._load(module)

    def _drop_hook(self, module: nn.Module, args: tuple, output: object) -> None:
        self._drop(module, self._slots[module])

    def restore(self) -> None:
        """Put every tensor back in RAM (in its current dtype), remove the hooks, close."""
        for module in self._slots:
            self._load(module)
        self.close()

    def close(self) -> None:
        """Remove the hooks and free the file (the weights are lost unless restored)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if getattr(self._model, _DISK_ATTR, None) is self:
            delattr(self._model, _DISK_ATTR)
        self._file.close()


def disk_weights(model: nn.Module) -> DiskWeights | None:
    """Return the DiskWeights streaming ``model``'s weights, or None if it has none."""
    return getattr(model, _DISK_ATTR, None)


class Offloader:
    """
    Places the pipeline's models according to an offload mode.

    Call :meth:`reclaim` before moving the models, :meth:`place` once after, and :meth:`use`
    before each stage. ``active`` is True for GPU offloading ('model', 'sequential' on a
    GPU); ``disk`` is True for 'sequential' on the CPU (weights streamed from a file).
    """

    def __init__(self, mode: str, device: torch.device) -> None:
        check_offload_mode(mode)
        self.mode = mode
        self.device = device
        self.active = mode != 'none' and device.type != 'cpu'
        self.disk = mode == 'sequential' and device.type == 'cpu'
        self._current: nn.Module | None = None
        if mode == 'model' and not self.active:
            _LOG.info('offload model: no-op on %s (the weights are already in host memory; '
                      'use sequential to stream them from disk)', device)

    @property
    def weights_device(self) -> torch.device:
        """Device the weights are placed on at construction (the host when active)."""
        return torch.device('cpu') if self.active else self.device

    @staticmethod
    def reclaim(models: Iterable[nn.Module]) -> None:
        """Bring back into RAM the weights of models a previous pipeline streamed from disk."""
        for model in models:
            store = disk_weights(model)
            if store is not None:
                store.restore()

    def place(self, models: Iterable[nn.Module], resident: Iterable[nn.Module] = ()) -> None:
        """
        Attach the offload hooks (sequential); the models must sit on weights_device.

        resident: submodules kept in RAM on the CPU (weights swapped in place by the caller).
        """
        if self.disk:
            resident = tuple(resident)
            for model in models:
                store = DiskWeights(model, resident)
                _LOG.info('offload sequential: %s weights (%.0f MB) moved to a temporary file '
                          'in %s, streamed in per module', type(model).__name__,
                          store.nbytes / 2 ** 20, tempfile.gettempdir())
            release_freed_memory()
            return
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
