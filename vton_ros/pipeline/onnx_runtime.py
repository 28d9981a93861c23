"""
The onnxruntime backend: CatVTON's model forwards as sessions over an export_onnx folder.

:class:`OrtModels` offers the forwards of vton_ros.pipeline.forwards on CPU torch
tensors; the pipeline's loop, schedulers, guidance, caches and previews run unchanged
above it. Providers: ``cpu``, ``cuda`` and ``tensorrt`` (fp16 when the export is fp16;
engines cached in ``<onnx_dir>/trt_engines``, so the first start builds them and later
starts load them). No rclpy here.
"""

import logging
import os
from typing import Any, Mapping

import numpy as np
import torch

from vton_ros.pipeline import onnx_manifest as manifests

_LOG = logging.getLogger(__name__)

PROVIDERS = {'cpu': 'CPUExecutionProvider', 'cuda': 'CUDAExecutionProvider',
             'tensorrt': 'TensorrtExecutionProvider'}
TRT_CACHE = 'trt_engines'
_NUMPY = {'fp32': np.float32, 'fp16': np.float16}


def parse_providers(text: str) -> tuple[str, ...]:
    """'tensorrt,cuda,cpu' -> the names in order; ValueError naming the valid ones."""
    names = tuple(n.strip() for n in text.split(',') if n.strip())
    bad = [n for n in names if n not in PROVIDERS]
    if not names or bad:
        raise ValueError(f'catvton.onnx_providers {text!r}: give a comma-separated list of '
                         f'{", ".join(PROVIDERS)} (first = preferred), e.g. tensorrt,cuda,cpu')
    return names


def check_providers(names: tuple[str, ...]) -> None:
    """Raise ValueError if this onnxruntime build lacks a requested provider."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    missing = [n for n in names if PROVIDERS[n] not in have]
    if missing:
        raise ValueError(f'catvton.onnx_providers asks for {", ".join(missing)}, which this '
                         f'onnxruntime {ort.__version__} lacks (it has {", ".join(have)}): '
                         'install onnxruntime-gpu (JetPack: the Jetson Zoo wheel) or drop them')


class OrtModels:
    """
    ONNX Runtime sessions of one export; forwards on CPU torch tensors in the graph dtype.

    Build with :meth:`load`; the manifest is checked against the settings by the caller
    (onnx_manifest.check_manifest).
    """

    def __init__(self, onnx_dir: str, manifest: Mapping[str, Any],
                 sessions: Mapping[str, Any]) -> None:
        self.onnx_dir = onnx_dir
        self.manifest = manifest
        self._sessions = dict(sessions)
        self._np = _NUMPY[manifest['precision']]
        self.dtype = {'fp32': torch.float32, 'fp16': torch.float16}[manifest['precision']]

    @classmethod
    def load(cls, onnx_dir: str, providers: str = 'cpu', threads: int = 0) -> 'OrtModels':
        """
        Open every graph of the export in ``onnx_dir`` with the providers (in order).

        threads: CPU intra-op threads (0: onnxruntime's default). Raises
        ExportMismatchError for a missing or unreadable export, ValueError for providers.
        """
        import onnxruntime as ort
        from onnxruntime.capi.onnxruntime_pybind11_state import (Fail, InvalidGraph,
                                                                 InvalidProtobuf, NoSuchFile)

        names = parse_providers(providers)
        check_providers(names)
        manifest = manifests.read_manifest(onnx_dir)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads > 0:
            options.intra_op_num_threads = threads
        sessions = {}
        for graph, info in manifest['graphs'].items():
            path = os.path.join(onnx_dir, info['file'])
            if not os.path.isfile(path):
                raise manifests.ExportMismatchError(
                    f'{path} is missing (the manifest lists it): copy the whole export folder '
                    'or ' + manifests.FIX.format(dir=onnx_dir))
            try:
                sessions[graph] = ort.InferenceSession(
                    path, options, providers=[_provider(n, onnx_dir, manifest, info)
                                              for n in names])
            except (Fail, InvalidGraph, InvalidProtobuf, NoSuchFile) as err:
                raise manifests.ExportMismatchError(
                    f'onnxruntime cannot load {path}: {err}; '
                    + manifests.FIX.format(dir=onnx_dir)) from None
        _LOG.info('onnxruntime %s: %d graphs from %s on %s', ort.__version__, len(sessions),
                  onnx_dir, ', '.join(names))
        return cls(onnx_dir, manifest, sessions)

    def has(self, graph: str) -> bool:
        """Tell whether the export holds ``graph`` (e.g. 'taesd_encoder')."""
        return graph in self._sessions

    def _run(self, graph: str, **feeds: torch.Tensor) -> list[torch.Tensor]:
        arrays = {k: (v.detach().to('cpu', torch.float32).numpy() if k == 'timestep' else
                      v.detach().cpu().contiguous().numpy().astype(self._np, copy=False))
                  for k, v in feeds.items()}
        return [torch.from_numpy(a) for a in self._sessions[graph].run(None, arrays)]

    def unet(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """Noise prediction of (B, 9, 2h, w) at one timestep; B 1 or 2."""
        return self._run('unet', sample=sample, timestep=_timestep(timestep))[0]

    def unet_full(self, sample: torch.Tensor, timestep: torch.Tensor,
                  branch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the DeepCache full step: (noise, kept deep state); branch: the export's."""
        noise, kept = self._run('unet', sample=sample, timestep=_timestep(timestep))
        return noise, kept

    def unet_shallow(self, sample: torch.Tensor, timestep: torch.Tensor, kept: torch.Tensor,
                     branch: int) -> torch.Tensor:
        """Run the DeepCache shallow step from the kept state."""
        return self._run('unet_shallow', sample=sample, timestep=_timestep(timestep),
                         kept=kept)[0]

    def encode(self, image: torch.Tensor, tiny: bool = False) -> torch.Tensor:
        """(1, 3, H, W) in [-1, 1] -> scaled latents (1, 4, H/8, W/8)."""
        return self._run('taesd_encoder' if tiny else 'vae_encoder', image=image)[0]

    def decode(self, latents: torch.Tensor, tiny: bool = False) -> torch.Tensor:
        """Scaled latents (1, 4, h, w) -> (1, 3, 8h, 8w) in [-1, 1]."""
        return self._run('taesd_decoder' if tiny else 'vae_decoder', latents=latents)[0]

    def decode_fp32(self, latents: torch.Tensor) -> torch.Tensor:
        """Not available: the graphs have one precision (the NaN/Inf fallback needs fp32)."""
        raise FloatingPointError(
            f'the {self.manifest["precision"]} VAE decoder graph produced NaN/Inf and an '
            'export has no fp32 fallback: export with catvton.precision fp32 (or use '
            'catvton.decoder tiny)')

    def check_size(self, height: int, width: int) -> None:
        """Raise ValueError unless the try-on size is the export's."""
        size = (self.manifest['height'], self.manifest['width'])
        if (height, width) != size:
            raise ValueError(f'the ONNX export runs {size[0]}x{size[1]} only, got '
                             f'{height}x{width}: set catvton.height/width back, or export '
                             'again at that size')

    def check_cache(self, interval: int, branch: int) -> None:
        """Raise ValueError unless the export has the DeepCache graphs for this branch."""
        if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
            raise ValueError(f'cache_interval must be an int >= 1 (1 = off), got {interval!r}')
        exported = self.manifest['cache_branch']
        if interval > 1 and exported is None:
            raise ValueError('cache_interval > 1 needs the DeepCache graphs, which the ONNX '
                             'export lacks: set cache_interval 1, or export again with '
                             'catvton.cache_interval > 1')
        if interval > 1 and branch != exported:
            raise ValueError(f'cache_branch must be {exported} (the DeepCache branch of the '
                             f'ONNX export), got {branch!r}; or export again with that branch')


def _timestep(timestep: torch.Tensor) -> torch.Tensor:
    """Return a scheduler timestep (0-d, int or float) as the graphs' (1,) float32."""
    return torch.as_tensor(timestep, dtype=torch.float32).reshape(1)


def _provider(name: str, onnx_dir: str, manifest: Mapping[str, Any],
              graph: Mapping[str, Any]) -> str | tuple[str, dict]:
    """Return the provider entry of one graph (TensorRT: fp16, engine cache, batch 1-2)."""
    if name != 'tensorrt':
        return PROVIDERS[name]
    cache = os.path.join(onnx_dir, TRT_CACHE)
    os.makedirs(cache, exist_ok=True)
    options = {'trt_fp16_enable': manifest['precision'] == 'fp16',
               'trt_engine_cache_enable': True, 'trt_engine_cache_path': cache,
               'trt_timing_cache_enable': True, 'trt_timing_cache_path': cache}
    if graph['file'].startswith('unet'):  # dynamic batch: 1 (no guidance) to 2 (guidance)
        def shapes(batch: int) -> str:
            return ','.join(f'{n}:' + 'x'.join(str(batch if i == 0 and n != 'timestep' else d)
                                               for i, d in enumerate(s))
                            for n, s in graph['inputs'].items())
        options.update(trt_profile_min_shapes=shapes(1), trt_profile_opt_shapes=shapes(2),
                       trt_profile_max_shapes=shapes(2))
    return PROVIDERS[name], options
