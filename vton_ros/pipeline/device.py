"""Device and dtype names resolved once, and the process-wide torch settings of the paper."""

import logging

import torch

from vton_ros.settings.choices import DTYPE_NAMES, PRECISIONS

_LOG = logging.getLogger(__name__)

DTYPES = dict(zip(DTYPE_NAMES, (torch.float32, torch.float16, torch.bfloat16)))


def resolve_device(name: str = 'auto') -> torch.device:
    """Map 'auto' | 'cpu' | 'cuda' | 'cuda:N' to a torch.device; 'auto' prefers CUDA."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(
            f"unknown device {name!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from err
    if device.type not in ('cpu', 'cuda'):
        raise ValueError(f"unsupported device {name!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            raise ValueError(f'device {name!r} requested but CUDA is not available in this torch '
                             f"({torch.__version__}); set it to 'auto' or 'cpu', or install a "
                             'CUDA build of torch')
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f'device {name!r} does not exist: '
                             f'{torch.cuda.device_count()} CUDA device(s) present; set it to '
                             "'auto', 'cuda' or an index below that")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """Map 'fp32' | 'fp16' | 'bf16' | 'auto' to a dtype (auto: bf16/fp16 on CUDA, fp32 on CPU)."""
    if name == 'auto':
        if device.type == 'cuda':
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if name not in DTYPES:
        raise ValueError(f'unknown precision {name!r}; valid: {", ".join(PRECISIONS)}')
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    """Inverse of :data:`DTYPES` ('fp32', 'fp16', 'bf16')."""
    return {v: k for k, v in DTYPES.items()}[dtype]


def configure_torch(device: torch.device, cudnn_benchmark: bool = False,
                    gpu_memory_fraction: float = 1.0, threads: int = 0) -> None:
    """
    Set process-wide torch flags. Call from entry points (main), never from a constructor.

    cudnn_benchmark: let cuDNN pick the fastest convolution algorithms (fixed input sizes).
    gpu_memory_fraction: cap this process's CUDA caching allocator (0.85 in the paper).
    threads: CPU intra-op threads; 0 leaves torch's default.
    """
    if not 0.0 < gpu_memory_fraction <= 1.0:
        raise ValueError(f'gpu_memory_fraction must be in (0, 1], got {gpu_memory_fraction}')
    if threads > 0:
        torch.set_num_threads(threads)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = cudnn_benchmark
        if gpu_memory_fraction < 1.0:
            torch.cuda.set_per_process_memory_fraction(gpu_memory_fraction, device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    _LOG.info('torch configured: device=%s cudnn_benchmark=%s memory_fraction=%.2f threads=%d',
              device, cudnn_benchmark, gpu_memory_fraction, torch.get_num_threads())
