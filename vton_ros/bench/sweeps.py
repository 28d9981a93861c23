"""
How the benchmark measures (:class:`BenchRunner`); what it measures: :mod:`.plan`.

A sweep is a list of :class:`~vton_ros.bench.plan.RunConfig`; identical configurations in
several sweeps are measured once. For each configuration the runner does ``warmup`` untimed
runs (with at most ``warmup_steps`` steps) whenever the pipeline or the image size changed,
then ``repeats`` timed runs with the garment-latent cache cleared before each (vae_encode
always encodes two images), and records the pipeline's own stage timings, the segmentation
time, peak memory, the FLOPs of each model forward and the achieved GFLOP/s.
"""

import ctypes
from dataclasses import asdict
import gc
import logging
import math
import time
from typing import Any

import numpy as np
import torch

from vton_ros.bench.flops import catvton_flops, gflops_per_s, segmentation_flops
from vton_ros.bench.plan import PlannedRun, PRECISIONS, RunConfig
from vton_ros.bench.timing import PeakMemory, raw_forward_times, summarize, time_call
from vton_ros.media import samples
from vton_ros.pipeline import weights
from vton_ros.pipeline.catvton import CatVTONPipeline
from vton_ros.pipeline.options import TIMING_KEYS

_LOG = logging.getLogger(__name__)
SEG_BACKENDS = ('pose', 'unet')


class PipelineSource:
    """
    Builds pipelines from full-size RANDOM weights or from real weights on disk.

    Random: the SD1.5-inpainting UNet and SD VAE shapes, built once per precision (one
    precision in memory at a time). Real: CatVTONPipeline.from_pretrained with
    local_files_only (a benchmark never downloads); the folders are resolved at
    construction, so missing weights raise ModelNotFoundError at once. Real folders holding
    RANDOM_TEST_WEIGHTS.txt (make_test_weights) are reported as random weights. The tiny
    decoder (TAESD) is built (random, full size) or loaded only for configurations using it.
    """

    def __init__(self, device: torch.device, *, random_weights: bool,
                 base_model: str = weights.DEFAULT_BASE_MODEL, vae: str = weights.DEFAULT_VAE,
                 attn_ckpt: str = weights.DEFAULT_ATTN_CKPT, attn_version: str = 'mix',
                 tiny_vae: str = weights.DEFAULT_TINY_VAE, seed: int = 0,
                 onnx_dir: str | None = None) -> None:
        self.device = device
        self.seed = seed
        self.onnx_dir = onnx_dir
        self._paths = {'base_model': base_model, 'vae': vae, 'attn_ckpt': attn_ckpt,
                       'attn_version': attn_version, 'tiny_vae': tiny_vae}
        self._components: tuple[str, Any, Any, dict] | None = None
        self._tiny_vae: tuple[str, Any] | None = None
        self._pipe: CatVTONPipeline | None = None
        self._pipe_key: tuple | None = None
        self._from_disk = not random_weights
        self.generation = 0  # bumped for every new pipeline (warm-up bookkeeping)
        if random_weights:
            self.random_weights = True
            self.weights = ('FULL-SIZE RANDOM weights (SD1.5-inpainting UNet 859.5 M, SD VAE '
                            '83.7 M params): the real shapes, so the same FLOPs, time and '
                            'memory as the real models')
            return
        folders = [weights.resolve_model(base_model, weights.base_model_files(),
                                         local_files_only=True),
                   weights.resolve_model(vae, weights.vae_files(), local_files_only=True),
                   weights.resolve_model(attn_ckpt, weights.attn_files(attn_version),
                                         local_files_only=True)]
        marked = [f for f in folders if weights.is_random_test_weights(f)]
        self.random_weights = bool(marked)
        if marked:
            self.weights = (f'RANDOM test weights from disk ({weights.RANDOM_MARKER} in '
                            f'{", ".join(marked)}): their sizes and FLOPs are whatever '
                            'those configs say (tiny for make_test_weights)')
        else:
            self.weights = (f'real weights: base {base_model}, VAE {vae}, attention '
                            f'{attn_ckpt} ({attn_version})')

    def pipeline(self, cfg: RunConfig) -> CatVTONPipeline:
        """Return a pipeline for ``cfg``'s precision, options and scheduler (reused if same)."""
        key = (cfg.precision, cfg.backend, cfg.options())
        if self._pipe is None or self._pipe_key != key:
            self._pipe = None
            self._pipe = self._build(cfg)
            self._pipe_key = key
            self.generation += 1
        self._pipe.set_scheduler(cfg.scheduler)
        return self._pipe

    def _build(self, cfg: RunConfig) -> CatVTONPipeline:
        options = cfg.options()
        if cfg.backend == 'onnxruntime':
            if not self.onnx_dir:
                raise ValueError('backend onnxruntime needs --onnx-dir: an export_onnx folder '
                                 "at the bench's size and precision")
            providers = 'cuda,cpu' if self.device.type == 'cuda' else 'cpu'
            return CatVTONPipeline.from_onnx(self.onnx_dir, providers, cfg.scheduler,
                                             options=options, threads=torch.get_num_threads())
        if self._from_disk:
            return CatVTONPipeline.from_pretrained(
                device=str(self.device), dtype=cfg.precision, scheduler=cfg.scheduler,
                local_files_only=True, **asdict(options), **self._paths)
        from vton_ros.pipeline.random_weights import random_full_size_components

        if self._components is None or self._components[0] != cfg.precision:
            self._components = None
            gc.collect()
            _release_freed_memory()
            self._components = (cfg.precision,
                                *random_full_size_components(cfg.precision, self.seed))
        _, unet, vae, scheduler_config = self._components
        vae.disable_slicing()  # the shared VAE may carry the previous pipeline's options
        vae.disable_tiling()
        tiny = None
        if options.uses_tiny_vae:
            if self._tiny_vae is None or self._tiny_vae[0] != cfg.precision:
                from vton_ros.pipeline.random_weights import random_tiny_vae
                self._tiny_vae = (cfg.precision, random_tiny_vae(cfg.precision, self.seed + 2,
                                                                 full_size=True))
            tiny = self._tiny_vae[1]
        return CatVTONPipeline.from_components(unet, vae, scheduler_config,
                                               scheduler=cfg.scheduler,
                                               device=str(self.device), dtype=cfg.precision,
                                               options=options, tiny_vae=tiny)


def _release_freed_memory() -> None:
    """Return freed heap pages to the OS (glibc malloc_trim), so RSS peaks stay honest."""
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


def make_inputs(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Return (person, garment, mask) for timing: bundled portrait, drawn t-shirt, torso box.

    person: 512x512x3 uint8 (astronaut); garment: height x width x 3 uint8; mask: 512x512
    uint8 with 255 over the torso. Times do not depend on the content.
    """
    person = samples.portrait('astronaut')
    garment = samples.garment('tshirt', height=height, width=width)
    mask = np.zeros(person.shape[:2], np.uint8)
    h, w = mask.shape
    mask[int(0.45 * h):int(0.98 * h), int(0.15 * w):int(0.85 * w)] = 255
    return person, garment, mask


def _ceil_to(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


class BenchRunner:
    """
    Measures configurations on one device; results are plain dicts (see :meth:`measure`).

    repeats/warmup: timed and untimed runs per configuration; warmup_steps: steps of the
    warm-up runs (at most the configuration's). segmentation: backends to time ('pose',
    'unet'); seg_checkpoint: trained U-Net (default: random weights at the try-on size
    rounded up to a multiple of 32). overhead: also time the bare model forwards (stages).
    """

    def __init__(self, source: PipelineSource, *, repeats: int = 3, warmup: int = 1,
                 warmup_steps: int = 1, segmentation: tuple[str, ...] = SEG_BACKENDS,
                 seg_checkpoint: str | None = None, seed: int = 0) -> None:
        if repeats < 1 or warmup < 0 or warmup_steps < 1:
            raise ValueError('repeats must be >= 1, warmup >= 0 and warmup_steps >= 1')
        unknown = set(segmentation) - set(SEG_BACKENDS)
        if unknown:
            raise ValueError(f'unknown segmentation backend(s) {sorted(unknown)}; valid: '
                             f'{", ".join(SEG_BACKENDS)}')
        self.source = source
        self.device = source.device
        self.repeats = repeats
        self.warmup = warmup
        self.warmup_steps = warmup_steps
        self.segmentation = tuple(segmentation)
        self.seg_checkpoint = seg_checkpoint
        self.seed = seed
        self._warmed: set = set()
        self._seg_cache: dict = {}
        self._flop_cache: dict = {}

    # ----------------------------------------------------------------- one configuration

    def measure(self, cfg: RunConfig, overhead: bool = False) -> dict[str, Any]:
        """
        Time one configuration; return its result dict.

        Keys: config, label, status ('ok'), timings (pipeline keys + segmentation, each
        :class:`Stats` as dict), segmentation (per backend), flops_g, gflops_per_s,
        per_step_s, memory, overhead (when asked), wall_s.
        """
        started = time.perf_counter()
        pipe = self.source.pipeline(cfg)
        person, garment, mask = make_inputs(cfg.height, cfg.width)
        call = dict(cfg.call_kwargs(), seed=self.seed)
        del call['num_inference_steps']  # warm-up and timed runs give their own
        fraction_set = self._set_memory_fraction(cfg.memory_fraction)
        try:
            warm_key = (self.source.generation, cfg.height, cfg.width, cfg.cfg)
            warm_steps = min(cfg.steps, self.warmup_steps)
            if warm_key not in self._warmed:
                for _ in range(self.warmup):
                    pipe.garment_cache.clear()
                    pipe(person, garment, mask, num_inference_steps=warm_steps, **call)
                self._warmed.add(warm_key)
            if overhead and self.warmup:
                raw_forward_times(pipe, cfg, steps=warm_steps)  # warm the bare calls too
            samples_by_key = {k: [] for k in TIMING_KEYS}
            raw = {'vae_encode': [], 'denoise': [], 'vae_decode': []}
            nan_recovered = 0
            with PeakMemory(self.device) as memory:
                for _ in range(self.repeats):
                    pipe.garment_cache.clear()  # vae_encode = masked person + garment
                    result = pipe(person, garment, mask, num_inference_steps=cfg.steps, **call)
                    for key in TIMING_KEYS:
                        samples_by_key[key].append(result.timings[key])
                    nan_recovered += int(result.nan_recovered)
                    if overhead and not raw['denoise']:  # once, after the first timed run
                        for key, value in raw_forward_times(pipe, cfg).items():
                            raw[key].append(value)
        finally:
            if fraction_set:
                torch.cuda.set_per_process_memory_fraction(1.0, self.device)
        timings = {k: summarize(v) for k, v in samples_by_key.items()}
        seg = self._segmentation(cfg)
        out = {'config': asdict(cfg), 'label': cfg.label(), 'status': 'ok', 'skip_reason': None,
               'cfg_batch': 2 if cfg.cfg else 1,
               'timings': {k: s.to_dict() for k, s in timings.items()},
               'segmentation': seg,
               'per_step_s': timings['denoise'].median / cfg.steps,
               'memory': memory.to_dict(),
               'nan_recovered_runs': nan_recovered,
               'garment_cache': 'cleared before every timed run (vae_encode encodes 2 images)'}
        seg_main = seg.get('unet') or seg.get('pose')
        if seg_main and seg_main.get('stats'):
            out['timings']['segmentation'] = seg_main['stats']
            out['segmentation_backend'] = 'unet' if seg.get('unet') else 'pose'
            out['total_with_segmentation_s'] = (timings['total'].median
                                                + seg_main['stats']['median'])
        out.update(self._flops(cfg, {k: s.median for k, s in timings.items()}, seg))
        if overhead:
            out['overhead'] = overhead_table(samples_by_key, raw)
        out['wall_s'] = time.perf_counter() - started
        return out

    def _set_memory_fraction(self, fraction: float) -> bool:
        """Cap the CUDA allocator for one configuration (the bench owns this process)."""
        if fraction >= 1.0 or self.device.type != 'cuda':
            return False
        torch.cuda.set_per_process_memory_fraction(fraction, self.device)
        return True

    # ----------------------------------------------------------------- compute floor

    def _flops(self, cfg: RunConfig, medians: dict[str, float],
               seg: dict[str, Any]) -> dict[str, Any]:
        pipe = self.source.pipeline(cfg)
        key = (cfg.height, cfg.width, cfg.cfg)  # one model architecture per source
        if key not in self._flop_cache:
            self._flop_cache[key] = catvton_flops(dict(pipe.unet.config), dict(pipe.vae.config),
                                                  cfg.height, cfg.width, cfg.cfg)
        model = self._flop_cache[key]
        stage = model.stage_flops(cfg.steps, encoded_images=2)
        stage['total'] = sum(stage.values())
        flops_g = {k: v / 1e9 for k, v in stage.items()}
        flops_g['unet_forward'] = model.unet_forward / 1e9
        flops_g['vae_encode_image'] = model.vae_encode_image / 1e9
        rates = {k: gflops_per_s(stage[k], medians[k]) for k in stage}
        unet_seg = seg.get('unet') or {}
        if unet_seg.get('flops_g') is not None and unet_seg.get('stats'):
            flops_g['segmentation'] = unet_seg['flops_g']
            rates['segmentation'] = gflops_per_s(unet_seg['flops_g'] * 1e9,
                                                 unet_seg['stats']['median'])
        return {'flops_g': flops_g, 'gflops_per_s': rates, 'unet_batch': model.unet_batch}

    # ----------------------------------------------------------------- segmentation

    def _segmentation(self, cfg: RunConfig) -> dict[str, Any]:
        return self.time_segmentation(cfg, samples.portrait('astronaut'))

    def time_segmentation(self, cfg: RunConfig, image: np.ndarray) -> dict[str, Any]:
        """
        Time each configured mask backend on ``image`` (HxWx3 uint8 RGB camera frame).

        Returns {backend: {'stats', 'input', ...}}; the unet model runs at ``cfg``'s try-on
        size (rounded up to a multiple of 32) and precision. Cached per image size.
        """
        out = {}
        if 'pose' in self.segmentation:
            key = ('pose', image.shape)
            if key not in self._seg_cache:
                self._seg_cache[key] = self._time_pose(image)
            out['pose'] = self._seg_cache[key]
        if 'unet' in self.segmentation:
            key = ('unet', cfg.height, cfg.width, cfg.precision, image.shape)
            if key not in self._seg_cache:
                self._seg_cache[key] = self._time_unet(cfg, image)
            out['unet'] = self._seg_cache[key]
        return out

    def _time_generator(self, gen: Any, image: np.ndarray) -> dict[str, Any]:
        for _ in range(max(1, self.warmup)):
            gen(image, cloth_type='upper')
        times = [time_call(lambda: gen(image, cloth_type='upper'), self.device)
                 for _ in range(max(3, self.repeats))]
        return summarize(times).to_dict()

    def _time_pose(self, image: np.ndarray) -> dict[str, Any]:
        from vton_ros.pipeline.masks import create_mask_generator

        try:
            gen = create_mask_generator('pose')
        except ImportError as err:
            return {'stats': None, 'skip_reason': f'pose backend unavailable: {err}'}
        with gen:
            stats = self._time_generator(gen, image)
        return {'stats': stats, 'input': list(image.shape[:2]),
                'note': 'mediapipe BlazePose (model_complexity 1) + geometry, on the CPU'}

    def _time_unet(self, cfg: RunConfig, image: np.ndarray) -> dict[str, Any]:
        from vton_ros.pipeline.masks import UNetMaskGenerator
        from vton_ros.pipeline.segmentation import build_model, SegmentationConfig, Segmenter

        if self.seg_checkpoint:
            gen = UNetMaskGenerator.from_pretrained(self.seg_checkpoint, None,
                                                    str(self.device), cfg.precision)
            weights_note = f'checkpoint {self.seg_checkpoint}'
        else:
            config = SegmentationConfig(height=_ceil_to(cfg.height, 32),
                                        width=_ceil_to(cfg.width, 32))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                model = build_model(config)
            gen = UNetMaskGenerator(Segmenter(model, config, str(self.device), cfg.precision))
            weights_note = 'RANDOM weights (smp U-Net ResNet-50, encoder_weights=None)'
        seg_cfg = gen.segmenter.config
        with gen:
            stats = self._time_generator(gen, image)
        flops = segmentation_flops(seg_cfg.height, seg_cfg.width, seg_cfg.encoder)
        return {'stats': stats, 'input': list(image.shape[:2]), 'height': seg_cfg.height,
                'width': seg_cfg.width,
                'encoder': seg_cfg.encoder, 'weights': weights_note, 'flops_g': flops / 1e9,
                'precision': cfg.precision}


def overhead_table(pipeline: dict[str, list[float]],
                   raw: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """
    Pipeline stage time vs the bare model forwards it contains, per stage.

    pipeline/raw: samples (s) per stage key; raw sample i was taken right after pipeline
    run i, so they are compared in pairs (a busy machine drifts between runs). Returns
    {stage: {pipeline_s (median of the paired runs), pipeline_median_s (all runs), raw_s,
    n_raw, overhead_pct}}; overhead_pct = (pipeline_s - raw_s) / raw_s * 100.
    """
    table = {}
    for key, values in raw.items():
        if not values:
            continue
        pipe_s = summarize(pipeline[key][:len(values)]).median
        raw_s = summarize(values).median
        table[key] = {'pipeline_s': pipe_s, 'pipeline_median_s': summarize(pipeline[key]).median,
                      'raw_s': raw_s, 'n_raw': len(values),
                      'overhead_pct': (pipe_s - raw_s) / raw_s * 100.0 if raw_s > 0 else None}
    return table


def skipped_result(cfg: RunConfig, reason: str) -> dict[str, Any]:
    """Return the result dict of a configuration that was not measured, with the reason."""
    return {'config': asdict(cfg), 'label': cfg.label(), 'status': 'skipped',
            'skip_reason': reason}


def run_plan(runner: BenchRunner, runs: list[PlannedRun], base_precision: str,
             overhead: bool = True) -> list[dict[str, Any]]:
    """
    Measure every planned run once (shared configurations measured once) and return results.

    Configurations are measured grouped by precision (base precision first) so each set
    of weights is built once; each result lists the sweeps it belongs to in 'sweeps'.
    Failures (e.g. out of memory) are recorded with status 'failed' and the error.
    """
    unique: dict[RunConfig, dict[str, Any]] = {}
    for planned in runs:
        entry = unique.setdefault(planned.config, {'sweeps': [], 'skip': planned.skip_reason,
                                                   'overhead': False})
        if planned.sweep not in entry['sweeps']:
            entry['sweeps'].append(planned.sweep)
        entry['overhead'] |= overhead and planned.sweep == 'stages'
    order = sorted(unique, key=lambda c: (c.precision != base_precision,
                                          PRECISIONS.index(c.precision)))
    results = {}
    for number, cfg in enumerate(order, 1):
        entry = unique[cfg]
        if entry['skip']:
            _LOG.warning('[%d/%d] %s: SKIPPED (%s)', number, len(order), cfg.label(),
                         entry['skip'])
            result = skipped_result(cfg, entry['skip'])
        else:
            _LOG.info('[%d/%d] measuring %s (%s)', number, len(order), cfg.label(),
                      ', '.join(entry['sweeps']))
            try:
                result = runner.measure(cfg, overhead=entry['overhead'])
            except (RuntimeError, ValueError, MemoryError) as err:
                _LOG.error('%s failed: %s', cfg.label(), err)
                result = {'config': asdict(cfg), 'label': cfg.label(), 'status': 'failed',
                          'skip_reason': f'{type(err).__name__}: {err}'}
            else:
                _LOG.info('    total %.2f s (denoise %.2f s), peak %.0f MB, %.0f s wall',
                          result['timings']['total']['median'],
                          result['timings']['denoise']['median'],
                          result['memory']['peak_mb'], result['wall_s'])
        result['sweeps'] = entry['sweeps']
        results[cfg] = result
    ordered = [results[c] for c in unique]  # back to plan order
    for number, result in enumerate(ordered, 1):
        result['id'] = f'c{number}'
    return ordered
