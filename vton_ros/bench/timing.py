"""
Timing statistics, device-synchronised timers, peak memory and a machine description.

On CUDA, kernels run asynchronously: :func:`time_call` brackets the call with CUDA events
and waits for the end event, so the time covers the GPU work. On CPU it is wall-clock.
"""

from collections.abc import Callable
from dataclasses import dataclass
import os
import platform
import resource
import statistics
import time
from typing import Any

import torch

CPU_MEMORY_METHOD = ('process RSS high-water mark (VmHWM), reset per configuration through '
                     '/proc/self/clear_refs; increase = peak - RSS before the configuration')
CPU_MEMORY_FALLBACK = ('process ru_maxrss (monotonic over the whole process, NOT reset per '
                       'configuration: later configurations show the largest peak so far)')
CUDA_MEMORY_METHOD = ('torch.cuda.max_memory_allocated, reset per configuration; increase = '
                      'peak - memory allocated before the configuration (weights)')
MB = 1024.0 * 1024.0


@dataclass(frozen=True)
class Stats:
    """
    Summary of repeated measurements (seconds).

    median, minimum, maximum, q1/q3 (inclusive quartiles; equal to the median for one sample), n,
    and the raw samples in measurement order.
    """

    median: float
    minimum: float
    maximum: float
    q1: float
    q3: float
    n: int
    samples: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict for JSON."""
        return {'median': self.median, 'min': self.minimum, 'max': self.maximum,
                'q1': self.q1, 'q3': self.q3, 'n': self.n, 'samples': list(self.samples)}


def summarize(samples: list[float]) -> Stats:
    """Return the :class:`Stats` of a non-empty list of measurements."""
    if not samples:
        raise ValueError('summarize needs at least one sample')
    values = [float(s) for s in samples]
    ordered = sorted(values)
    median = statistics.median(ordered)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method='inclusive')
    else:
        q1 = q3 = median
    return Stats(median, ordered[0], ordered[-1], q1, q3, len(values), tuple(values))


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (no-op on CPU)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device) -> float:
    """
    Run ``fn()`` once and return its duration in seconds.

    CUDA: measured between two CUDA events recorded around the call on the current stream,
    after waiting for the end event. CPU: time.perf_counter around the call.
    """
    if device.type == 'cuda':
        synchronize(device)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin


def _proc_status_kb(field: str) -> float | None:
    """Return a ``/proc/self/status`` field in kB (e.g. VmRSS, VmHWM), None if unavailable."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def _reset_rss_peak() -> bool:
    """Reset the process's RSS high-water mark (Linux >= 4.0); True on success."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def _ru_maxrss_mb() -> float:
    """Return ru_maxrss in MB (kB on Linux, bytes on macOS)."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value / MB if platform.system() == 'Darwin' else value / 1024.0


class PeakMemory:
    """
    Context manager measuring the peak memory of the code inside it.

    After exit: ``peak_mb`` (CUDA: max allocated; CPU: process peak RSS), ``increase_mb``
    (peak minus the usage at entry) and ``method`` (how it was measured, for reports).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mb = 0.0
        self.increase_mb = 0.0
        self.method = ''
        self._start_mb = 0.0
        self._reset = False

    def __enter__(self) -> 'PeakMemory':
        """Reset the peak counter and record the usage at entry."""
        if self.device.type == 'cuda':
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start_mb = torch.cuda.memory_allocated(self.device) / MB
            self.method = CUDA_MEMORY_METHOD
        else:
            self._reset = _reset_rss_peak()
            rss = _proc_status_kb('VmRSS')
            self._start_mb = rss / 1024.0 if rss is not None else _ru_maxrss_mb()
            self.method = CPU_MEMORY_METHOD if self._reset else CPU_MEMORY_FALLBACK
        return self

    def __exit__(self, *exc: Any) -> None:
        """Read the peak."""
        if self.device.type == 'cuda':
            synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / MB
        else:
            hwm = _proc_status_kb('VmHWM') if self._reset else None
            self.peak_mb = hwm / 1024.0 if hwm is not None else _ru_maxrss_mb()
        self.increase_mb = max(0.0, self.peak_mb - self._start_mb)

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict for JSON (MB = 2**20 bytes)."""
        return {'peak_mb': round(self.peak_mb, 1), 'increase_mb': round(self.increase_mb, 1),
                'method': self.method}


def cpu_model() -> str:
    """Return the CPU model name (from /proc/cpuinfo on Linux)."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.lower().startswith(('model name', 'hardware')):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """Return the 1/5/15-minute load averages, None where unsupported."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_info(device: torch.device) -> dict[str, Any]:
    """Describe the machine and software: CPU, cores, threads, versions, device name."""
    import diffusers

    info = {
        'cpu_model': cpu_model(),
        'cpu_cores_logical': os.cpu_count(),
        'cpu_affinity': len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
        else None,
        'torch_threads': torch.get_num_threads(),
        'memory_total_gb': _mem_total_gb(),
        'platform': platform.platform(),
        'python': platform.python_version(),
        'torch': torch.__version__,
        'diffusers': diffusers.__version__,
        'device': str(device),
        'device_name': cpu_model(),
        'cuda': None,
        'load_average_start': load_average(),
    }
    if device.type == 'cuda':
        props = torch.cuda.get_device_properties(device)
        info.update(device_name=props.name, cuda=torch.version.cuda,
                    gpu_memory_gb=round(props.total_memory / MB / 1024.0, 2),
                    cudnn=torch.backends.cudnn.version())
    return info


def _mem_total_gb() -> float | None:
    """Return the physical memory in GiB (Linux), None if unknown."""
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemTotal:'):
                    return round(float(line.split()[1]) / 1024.0 / 1024.0, 1)
    except OSError:
        return None
    return None


@torch.inference_mode()
def raw_forward_times(pipe: Any, cfg: Any,
                      steps: int | None = None) -> dict[str, float]:
    """
    Seconds of the bare model forwards one try-on of ``cfg`` performs, without the pipeline.

    pipe: a CatVTONPipeline; cfg: a :class:`~vton_ros.bench.plan.RunConfig`.

    denoise: ``steps`` (default ``cfg.steps``) UNet calls on a (batch, 9, 2h/8, w/8) input
    at the scheduler's timesteps; vae_encode: two (1, 3, h, w) encodes (posterior mean);
    vae_decode: one (1, 4, h/8, w/8) decode. Inputs: random tensors, pipeline dtype/device.
    """
    device, dtype = pipe.device, pipe.dtype
    factor = pipe.vae_scale_factor
    batch = 2 if cfg.cfg else 1
    latent_h, latent_w = cfg.height // factor, cfg.width // factor
    channels = int(pipe.vae.config.latent_channels)
    gen = torch.Generator('cpu').manual_seed(0)
    unet_in = torch.randn(batch, pipe.unet.config.in_channels, 2 * latent_h, latent_w,
                          generator=gen).to(device, dtype)
    scheduler = pipe.make_scheduler()
    scheduler.set_timesteps(steps or cfg.steps, device=device)
    timesteps = list(scheduler.timesteps)
    image = torch.randn(1, 3, cfg.height, cfg.width, generator=gen).clamp(-1, 1).to(device, dtype)
    latent = torch.randn(1, channels, latent_h, latent_w, generator=gen).to(device, dtype)

    def denoise() -> None:
        for t in timesteps:
            pipe.unet(unet_in, t, encoder_hidden_states=None, return_dict=False)

    def encode() -> None:
        for _ in range(2):
            pipe.vae.encode(image).latent_dist.mean

    def decode() -> None:
        pipe.vae.decode(latent).sample

    return {'vae_encode': time_call(encode, device), 'denoise': time_call(denoise, device),
            'vae_decode': time_call(decode, device)}
