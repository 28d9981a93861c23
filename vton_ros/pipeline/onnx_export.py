"""
Export CatVTON's models to ONNX at the settings' size and precision.

torch's TorchScript exporter, opset 17; for the onnxruntime backend here and TensorRT on a
Jetson.

Graphs (``<name>.onnx`` in the output folder), all scaled-latent in / out like the pipeline:

- ``unet``: sample (B, 9, 2h, w), timestep (1,) float32 -> noise (B, 4, 2h, w); B is a
  dynamic axis, checked at 1 (steps without guidance) and 2 ([uncond, cond]). CatVTON's
  processors: cross-attention skipped, CatVTON's self-attention weights. With a DeepCache
  branch it also returns ``kept`` (the deep state the shallow steps reuse).
- ``unet_shallow`` (DeepCache, catvton.cache_interval > 1): sample, timestep, kept -> noise.
- ``vae_encoder``: image (1, 3, H, W) in [-1, 1] -> posterior mean * scaling factor;
  ``vae_decoder``: scaled latents (1, 4, h, w) -> image in [-1, 1].
- ``taesd_encoder`` / ``taesd_decoder``: the tiny VAE, same shapes (when it is found).

A graph over 2 GB (the fp32 UNet) keeps its weights in one ``<name>.onnx.data`` file.
``manifest.json`` (see onnx_manifest) is written last. No rclpy here.
"""

from collections.abc import Callable
import json
import logging
import os
import shutil
import tempfile
import time

import numpy as np
import torch
from torch import nn

from vton_ros.pipeline import onnx_manifest as manifests
from vton_ros.pipeline import weights
from vton_ros.pipeline.deepcache import check_cache_options, layered_forward, skip_count
from vton_ros.settings.views import CatVTONCall, CatVTONLoad

_LOG = logging.getLogger(__name__)

EXTERNAL_DATA_LIMIT = 2 ** 31 - 1  # protobuf's limit on one file
Progress = Callable[[str], None]


class UNetGraph(nn.Module):
    """CatVTON's UNet call; with a branch also the DeepCache state (full step)."""

    def __init__(self, unet: nn.Module, branch: int | None) -> None:
        super().__init__()
        self.unet = unet
        self.branch = branch

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor):
        """Noise prediction (and ``kept`` with a branch)."""
        if self.branch is None:
            return self.unet(sample, timestep, encoder_hidden_states=None, return_dict=False)[0]
        return layered_forward(self.unet, sample, timestep, self.branch, None)


class ShallowGraph(nn.Module):
    """DeepCache's shallow step from the kept deep state."""

    def __init__(self, unet: nn.Module, branch: int) -> None:
        super().__init__()
        self.unet = unet
        self.branch = branch

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor,
                kept: torch.Tensor) -> torch.Tensor:
        """Noise prediction of a shallow step."""
        return layered_forward(self.unet, sample, timestep, self.branch, kept)[0]


class EncoderGraph(nn.Module):
    """Image in [-1, 1] -> scaled latents (VAE posterior mean * factor, or TAESD)."""

    def __init__(self, vae: nn.Module, scale: float | None) -> None:
        super().__init__()
        self.vae = vae
        self.scale = scale

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Encode one image."""
        if self.scale is None:  # TAESD encodes to scaled latents directly
            return self.vae.encode(image).latents
        return self.vae.encode(image).latent_dist.mean * self.scale


class DecoderGraph(nn.Module):
    """Scaled latents -> image in [-1, 1] (the VAE divides by its factor first)."""

    def __init__(self, vae: nn.Module, scale: float | None) -> None:
        super().__init__()
        self.vae = vae
        self.scale = scale

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """Decode one latent."""
        if self.scale is not None:
            latents = latents / self.scale
        return self.vae.decode(latents).sample


def export_models(load: CatVTONLoad, call: CatVTONCall, out_dir: str, *,
                  progress: Progress = _LOG.info, verify: bool = True,
                  external_limit: int = EXTERNAL_DATA_LIMIT) -> dict:
    """
    Export the graphs the settings need into ``out_dir``; return the manifest.

    load, call: tryon_server's catvton settings; the weights are looked up without download
    unless catvton.allow_download. progress: called with one line per stage. verify: run
    each graph once in onnxruntime (CPU) against torch and record the largest difference
    (fp32 only). external_limit: graphs larger than this many bytes keep their weights in
    one external data file. Raises ValueError for settings an export cannot honour.
    """
    from vton_ros.pipeline.catvton import CatVTONPipeline

    precision = manifests.export_precision(load.precision)
    version = manifests.export_attn_version(load, call)
    height, width = call.height, call.width
    sources = manifests.source_files(version)
    folders = {}  # CatVTONLoad field -> local folder
    for field, files in sources.items():
        try:
            folders[field] = weights.resolve_model(getattr(load, field), files,
                                                   local_files_only=not load.allow_download)
        except weights.ModelNotFoundError:
            if field != 'tiny_vae':
                raise
            progress(f'tiny VAE {load.tiny_vae} not found: no TAESD graphs')
    progress(f'loading {version} weights ({precision}, {height}x{width})')
    pipe = CatVTONPipeline.from_pretrained(
        base_model=folders['base_model'], vae=folders['vae'], attn_ckpt=folders['attn_ckpt'],
        attn_version=version, device='cpu', dtype=precision,
        tiny_vae=folders.get('tiny_vae', ''),
        decoder='tiny' if 'tiny_vae' in folders else 'full', local_files_only=True)
    branch = None
    if call.cache_interval > 1:
        branch = call.cache_branch
        check_cache_options(pipe.unet, call.cache_interval, branch)
    dtype = pipe.dtype
    factor = pipe.vae_scale_factor
    scale = float(pipe.vae.config.scaling_factor)
    channels = int(pipe.vae.config.latent_channels)
    lat = (height // factor, width // factor)
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 2 * channels + 1, 2 * lat[0], lat[1], generator=gen).to(dtype)
    timestep = torch.tensor([500.0])
    image = torch.rand(1, 3, height, width, generator=gen).to(dtype) * 2 - 1
    latents = torch.randn(1, channels, *lat, generator=gen).to(dtype)
    jobs = [('unet', UNetGraph(pipe.unet, branch), (sample, timestep), ['sample', 'timestep'],
             ['noise'] + (['kept'] if branch is not None else []))]
    if branch is not None:
        with torch.inference_mode():
            kept = layered_forward(pipe.unet, sample, timestep, branch, None)[1].clone()
        jobs.append(('unet_shallow', ShallowGraph(pipe.unet, branch),
                     (sample, timestep, kept), ['sample', 'timestep', 'kept'], ['noise']))
    jobs += [('vae_encoder', EncoderGraph(pipe.vae, scale), (image,), ['image'], ['latents']),
             ('vae_decoder', DecoderGraph(pipe.vae, scale), (latents,), ['latents'], ['image'])]
    if pipe.tiny_vae is not None:
        jobs += [('taesd_encoder', EncoderGraph(pipe.tiny_vae, None), (image,), ['image'],
                  ['latents']),
                 ('taesd_decoder', DecoderGraph(pipe.tiny_vae, None), (latents,), ['latents'],
                  ['image'])]
    os.makedirs(out_dir, exist_ok=True)
    old = os.path.join(out_dir, manifests.MANIFEST)
    if os.path.exists(old):
        os.remove(old)  # a half-done export must not pass for the previous one
    graphs = {}
    for i, (name, module, args, inputs, outputs) in enumerate(jobs, 1):
        progress(f'[{i}/{len(jobs)}] {name}: exporting {_shapes(inputs, args)}')
        start = time.perf_counter()
        info = _export_graph(module, args, inputs, outputs, out_dir, name, external_limit)
        if verify and precision == 'fp32':
            info['max_abs_diff'] = _verify(module, args, inputs, out_dir, name)
        graphs[name] = info
        progress(f'[{i}/{len(jobs)}] {name}: done in {time.perf_counter() - start:.1f} s'
                 + (f', onnxruntime vs torch max |diff| {info["max_abs_diff"]:.2e}'
                    if 'max_abs_diff' in info else ''))
    with open(os.path.join(folders['base_model'], 'scheduler',
                           'scheduler_config.json'), encoding='utf-8') as f:
        scheduler_config = json.load(f)
    progress('hashing the weight files')
    manifest = {
        'format': manifests.FORMAT, 'opset': manifests.OPSET, 'torch': torch.__version__,
        'onnx': _onnx_version(), 'height': height, 'width': width, 'precision': precision,
        'attn_version': version, 'cache_branch': branch,
        'skip_count': skip_count(pipe.unet), 'latent_channels': channels,
        'vae_scale_factor': factor, 'scaling_factor': scale,
        'random_weights': pipe.random_weights, 'scheduler_config': scheduler_config,
        'sources': {load.key(field): {'source': getattr(load, field),
                                      'files': manifests.fingerprint(folder, sources[field])}
                    for field, folder in folders.items()},
        'graphs': graphs,
    }
    tmp = old + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(manifest, f, indent=2)
    os.replace(tmp, old)
    progress(f'wrote {len(graphs)} graphs and {manifests.MANIFEST} to {out_dir}')
    return manifest


def _shapes(names: list[str], args: tuple) -> str:
    """'sample 2x9x16x6, timestep 1' for progress lines."""
    return ', '.join(f'{n} {"x".join(map(str, a.shape))}' for n, a in zip(names, args))


def _onnx_version() -> str:
    import onnx

    return onnx.__version__


def _export_graph(module: nn.Module, args: tuple, inputs: list[str], outputs: list[str],
                  out_dir: str, name: str, external_limit: int) -> dict:
    """Export one graph to out_dir/<name>.onnx (external data above the limit)."""
    import onnx

    dynamic = {n: {0: 'batch'} for n in inputs + outputs} if name.startswith('unet') else None
    path = os.path.join(out_dir, name + '.onnx')
    data = path + '.data'
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        raw = os.path.join(tmp, name + '.onnx')  # torch writes loose tensors past 2 GB
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(module, args, raw, dynamo=False, opset_version=manifests.OPSET,
                              input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                              do_constant_folding=True)
        size = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp))
        external = size > external_limit
        if os.path.exists(data):
            os.remove(data)
        if external:
            model = onnx.load(raw)
            onnx.save_model(model, path, save_as_external_data=True,
                            all_tensors_to_one_file=True, location=os.path.basename(data),
                            size_threshold=1024)
        else:
            shutil.move(raw, path)
    return {'file': os.path.basename(path), 'inputs': {n: list(a.shape) for n, a in
                                                       zip(inputs, args)},
            'outputs': outputs, 'external_data': external, 'bytes': size}


def _verify(module: nn.Module, args: tuple, inputs: list[str], out_dir: str,
            name: str) -> float:
    """Largest |onnxruntime - torch| over the outputs (the UNet at batch 1 and 2)."""
    import onnxruntime as ort

    session = ort.InferenceSession(os.path.join(out_dir, name + '.onnx'),
                                   providers=['CPUExecutionProvider'])
    batches = (1, 2) if name.startswith('unet') else (None,)
    worst = 0.0
    for batch in batches:
        feed = [a if batch is None or a.ndim < 4 else a[:batch] for a in args]
        with torch.inference_mode():
            want = module(*feed)
        want = want if isinstance(want, tuple) else (want,)
        got = session.run(None, {n: a.numpy() for n, a in zip(inputs, feed)})
        worst = max([worst] + [float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want)])
    return worst
