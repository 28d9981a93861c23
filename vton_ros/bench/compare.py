"""
``vton_bench --compare``: named configurations side by side on the same inputs and seed.

The configurations run interleaved (round r runs every configuration once), so a busy
machine slows all of them alike and the per-round speed-ups stay comparable. Each result
has per-stage seconds, the speed-up versus ``paper`` (median and spread of the per-round
ratios), the UNet forwards (full/shallow and batch sizes, from hooks on the UNet's
conv_in and mid block), the seconds spent inside model forwards and our own overhead
(everything else), peak memory, and the deviation of its image from the ``paper`` image
(max pixel difference, PSNR and SSIM with scikit-image).
"""

from collections import Counter
from dataclasses import asdict, dataclass
import json
import logging
import os
import time
from typing import Any

import numpy as np
import torch

from vton_ros.bench.plan import PROFILE_FIELDS, RunConfig, setting_name
from vton_ros.bench.report import fmt_num, fmt_s, RANDOM_BANNER
from vton_ros.bench.sweeps import BenchRunner, make_inputs, PipelineSource
from vton_ros.bench.timing import PeakMemory, summarize, synchronize
from vton_ros.pipeline.catvton import CatVTONPipeline
from vton_ros.pipeline.options import TIMING_KEYS

_LOG = logging.getLogger(__name__)

REFERENCE = 'paper'
SEG_FRAME = (480, 640)  # camera frame (height, width) for the segmentation fps


@dataclass(frozen=True)
class NamedConfig:
    """
    A named configuration: schema settings (catvton.*) and whether the garment is cached.

    garment_cached: the garment latent is in the pipeline's cache before each timed run
    (a mirror trying a catalogue garment again), so vae_encode encodes only the person.
    profile: take the settings from these files of config/, comma-separated, left to right
    (``fast``: config/fast.yaml alone; ``tryon,fast_cpu``: tryon.yaml, then fast_cpu.yaml),
    the YAML the nodes read; of their tryon_server settings, those of a bench run's
    :data:`PROFILE_FIELDS` (size, precision, steps, scheduler and guidance scale are the
    bench's own).
    """

    name: str
    settings: tuple[tuple[str, Any], ...]
    garment_cached: bool
    description: str
    profile: str | None = None

    def resolved(self) -> tuple[tuple[str, Any], ...]:
        """Return the settings: the given ones, or the profile's from its YAML files."""
        if self.profile is None:
            return self.settings
        from vton_ros.settings import files as param_files
        from vton_ros.settings import stack

        files = [stack.profile_file(name) for name in stack.parse_profiles(self.profile)]
        server = param_files.load_files(files).get('tryon_server', {})
        return tuple((setting_name(f), server[setting_name(f)]) for f in PROFILE_FIELDS
                     if setting_name(f) in server)


NAMED_CONFIGS = {c.name: c for c in (
    NamedConfig('paper', (('catvton.attention_slicing', 'auto'), ('catvton.vae_slicing', True)),
                False, "the paper's Jetson settings: CFG every step, full VAE, attention "
                'and VAE slicing, both images encoded every time'),
    NamedConfig('exact-fastest', (), True,
                'only speed-ups that keep the image (max difference <= 1/255): no slicing, '
                'garment latent from the cache'),
    NamedConfig('fast', (), True, 'config/fast.yaml: guidance on the first half of the '
                'steps, DeepCache every 3rd step (branch 0), channels_last, tiny decoder, '
                'garment cache', profile='fast'),
    # one lever each on top of exact-fastest, to see what each pays
    NamedConfig('guidance-interval', (('catvton.guidance_end', 0.5),), True,
                'exact-fastest + guidance on the first half of the steps only'),
    NamedConfig('deepcache', (('catvton.cache_interval', 3), ('catvton.cache_branch', 0)),
                True, 'exact-fastest + DeepCache: full UNet every 3rd step, branch 0'),
    NamedConfig('tiny-decoder', (('catvton.decoder', 'tiny'),), True,
                'exact-fastest + the tiny TAESD decoder for the result'),
    NamedConfig('channels-last', (('catvton.channels_last', True),), True,
                'exact-fastest + channels_last weights and activations'),
    NamedConfig('tiny-encoder', (('catvton.encoder', 'tiny'),), True,
                'exact-fastest + the tiny TAESD encoder for the person latent'),
    # the shipped profiles, a new garment every run (the server's "another garment" flow
    # without the catalogue cache)
    NamedConfig('tryon', (), False, "config/tryon.yaml's settings, garment encoded every run",
                profile='tryon'),
    NamedConfig('fast_cpu', (), False, 'config/fast_cpu.yaml over config/tryon.yaml: '
                'guidance on the first half, DeepCache 3, channels_last, tiny decoder and '
                'encoder; garment encoded every run', profile='tryon,fast_cpu'),
    NamedConfig('onnxruntime', (('catvton.backend', 'onnxruntime'),), True,
                'exact-fastest on the onnxruntime backend (the graphs of --onnx-dir)'),
    NamedConfig('offload-model', (('catvton.attention_slicing', 'auto'),
                                  ('catvton.vae_slicing', True), ('catvton.offload', 'model')),
                False, 'paper with one model on the GPU at a time (no-op on CPU)'),
    NamedConfig('offload-sequential', (('catvton.attention_slicing', 'auto'),
                                       ('catvton.vae_slicing', True),
                                       ('catvton.offload', 'sequential')),
                False, 'paper with layer-by-layer weight streaming (on CPU: from a temp file)'),
)}


def parse_names(text: str) -> tuple[str, ...]:
    """Parse 'a,b,c' into known configuration names (ValueError listing the valid ones)."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(',') if n.strip()))
    unknown = [n for n in names if n not in NAMED_CONFIGS]
    if unknown or not names:
        raise ValueError(f'unknown --compare configuration(s) {unknown or text!r}; valid: '
                         f'{", ".join(NAMED_CONFIGS)}')
    return names


def run_config(base: RunConfig, named: NamedConfig) -> RunConfig:
    """Apply a named configuration's settings to the base (size, steps, precision...)."""
    return base.with_settings(named.resolved())


class ForwardProbe:
    """
    Hooks counting UNet forwards and timing the model forwards of a pipeline.

    Every UNet forward (plain, full or shallow) runs conv_in; only full ones run the mid
    block. Model time: UNet from time_proj to conv_out, VAE encoder to quant_conv,
    post_quant_conv to decoder, tiny decoder and encoder. CUDA is synchronised at each hook.
    An onnxruntime pipeline has no torch modules: nothing is counted (``hooked`` False).
    """

    def __init__(self, pipe: CatVTONPipeline) -> None:
        self.device = pipe.device
        self.batches: list[int] = []
        self.full = 0
        self.model_s = 0.0
        self._start = 0.0
        self._handles: list = []
        unet, vae = pipe.unet, pipe.vae
        self.hooked = unet is not None  # onnxruntime: no torch modules to hook
        if not self.hooked:
            return
        spans = [(unet.time_proj, unet.conv_out),
                 (vae.encoder, vae.quant_conv or vae.encoder),
                 (vae.post_quant_conv or vae.decoder, vae.decoder)]
        if pipe.tiny_vae is not None:
            spans += [(pipe.tiny_vae.decoder, pipe.tiny_vae.decoder),
                      (pipe.tiny_vae.encoder, pipe.tiny_vae.encoder)]
        self._handles = [unet.conv_in.register_forward_pre_hook(self._count),
                         unet.mid_block.register_forward_pre_hook(self._count_full)]
        for first, last in spans:
            self._handles += [first.register_forward_pre_hook(self._begin),
                              last.register_forward_hook(self._end)]

    def _count(self, module: torch.nn.Module, args: tuple) -> None:
        self.batches.append(int(args[0].shape[0]))

    def _count_full(self, module: torch.nn.Module, args: tuple) -> None:
        self.full += 1

    def _begin(self, module: torch.nn.Module, args: tuple) -> None:
        synchronize(self.device)
        self._start = time.perf_counter()

    def _end(self, module: torch.nn.Module, args: tuple, output: Any) -> None:
        synchronize(self.device)
        self.model_s += time.perf_counter() - self._start

    def close(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()


def image_deviation(image: np.ndarray, reference: np.ndarray) -> dict[str, float | None]:
    """Max absolute difference (0-255), PSNR (dB; None when identical) and SSIM to a reference."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    diff = int(np.abs(image.astype(np.int16) - reference.astype(np.int16)).max())
    psnr = (None if diff == 0 else
            float(peak_signal_noise_ratio(reference, image, data_range=255)))
    ssim = float(structural_similarity(reference, image, channel_axis=2, data_range=255))
    return {'max_abs_diff': diff, 'psnr_db': psnr, 'ssim': ssim}


def _one_run(source: PipelineSource, cfg: RunConfig, named: NamedConfig,
             inputs: tuple[np.ndarray, np.ndarray, np.ndarray], seed: int,
             steps: int) -> tuple[Any, ForwardProbe, PeakMemory]:
    """Build (or reuse) the pipeline and run it once with the garment cache as named."""
    pipe = source.pipeline(cfg)
    person, garment, mask = inputs
    pipe.garment_cache.clear()
    if named.garment_cached:
        pipe.cache_garment(garment, cfg.height, cfg.width)
    probe = ForwardProbe(pipe)
    try:
        with PeakMemory(source.device) as memory:
            result = pipe(person, garment, mask, seed=seed,
                          **dict(cfg.call_kwargs(), num_inference_steps=steps))
    finally:
        probe.close()
    return result, probe, memory


def run_compare(runner: BenchRunner, base: RunConfig, names: tuple[str, ...], *,
                repeats: int, warmup_steps: int, seed: int) -> list[dict[str, Any]]:
    """
    Run the named configurations interleaved ``repeats`` times; return one dict per name.

    Each configuration first runs once untimed with ``warmup_steps`` steps. The reference
    (``paper``, when named) gives the speed-ups and the image deviations.
    """
    source = runner.source
    configs = [(NAMED_CONFIGS[n], run_config(base, NAMED_CONFIGS[n])) for n in names]
    inputs = make_inputs(base.height, base.width)
    for named, cfg in configs:
        _LOG.info('warm-up %s: %s', named.name, cfg.label())
        _one_run(source, cfg, named, inputs, seed, min(cfg.steps, warmup_steps))
    rows = {n: {'timings': {k: [] for k in TIMING_KEYS}, 'model_s': [], 'peak_mb': [],
                'increase_mb': [], 'images': []} for n in names}
    for round_ in range(repeats):
        for named, cfg in configs:
            result, probe, memory = _one_run(source, cfg, named, inputs, seed, cfg.steps)
            row = rows[named.name]
            for key in TIMING_KEYS:
                row['timings'][key].append(result.timings[key])
            row['model_s'].append(probe.model_s if probe.hooked else None)
            row['peak_mb'].append(memory.peak_mb)
            row['increase_mb'].append(memory.increase_mb)
            row['memory_method'] = memory.method
            row['images'].append(result.image)
            row['unet'] = {'forwards': len(probe.batches), 'full': probe.full,
                           'shallow': len(probe.batches) - probe.full,
                           'batch_sizes': dict(sorted(Counter(probe.batches).items()))}
            _LOG.info('[round %d/%d] %s: total %.2f s (denoise %.2f s), %d UNet forwards',
                      round_ + 1, repeats, named.name, result.timings['total'],
                      result.timings['denoise'], len(probe.batches))
    return [_summarise(named, cfg, rows, names) for named, cfg in configs]


def _summarise(named: NamedConfig, cfg: RunConfig, rows: dict[str, dict],
               names: tuple[str, ...]) -> dict[str, Any]:
    row = rows[named.name]
    totals = row['timings']['total']
    overhead = [100.0 * (t - m) / t for t, m in zip(totals, row['model_s']) if m is not None]
    out = {'name': named.name, 'description': named.description, 'label': cfg.label(),
           'settings': dict(named.resolved()), 'garment_cached': named.garment_cached,
           'config': asdict(cfg),
           'timings': {k: summarize(v).to_dict() for k, v in row['timings'].items()},
           'model_forward_s': summarize(row['model_s']).to_dict() if overhead else None,
           'overhead_pct': summarize(overhead).to_dict() if overhead else None,
           'unet': row['unet'],
           'memory': {'peak_mb': round(max(row['peak_mb']), 1),
                      'increase_mb': round(max(row['increase_mb']), 1),
                      'method': row['memory_method']},
           'deterministic': all(np.array_equal(row['images'][0], im) for im in row['images'])}
    if REFERENCE in names:
        ref = rows[REFERENCE]
        ratios = [r / t for r, t in zip(ref['timings']['total'], totals)]
        out['speedup'] = summarize(ratios).to_dict()
        out['vs_paper'] = image_deviation(row['images'][0], ref['images'][0])
    return out


def segmentation_fps(runner: BenchRunner, base: RunConfig) -> dict[str, Any]:
    """Frames per second of each mask backend on a SEG_FRAME camera frame (astronaut)."""
    import cv2

    from vton_ros.media import samples

    height, width = SEG_FRAME
    frame = cv2.resize(samples.portrait('astronaut'), (width, height),
                       interpolation=cv2.INTER_AREA)
    out = {}
    for backend, entry in runner.time_segmentation(base, frame).items():
        stats = entry.get('stats')
        out[backend] = {'fps': 1.0 / stats['median'] if stats else None,
                        'seconds': stats, 'frame': f'{width}x{height}',
                        'note': entry.get('skip_reason') or entry.get('note')
                        or entry.get('weights')}
    return out


# --------------------------------------------------------------------------- reports

def write_compare_reports(out_dir: str, doc: dict[str, Any]) -> list[str]:
    """Write compare.json, compare.md and compare.png into ``out_dir``; return the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, name) for name in ('compare.json', 'compare.md',
                                                      'compare.png')]
    with open(paths[0], 'w') as f:
        json.dump(doc, f, indent=2)
        f.write('\n')
    with open(paths[1], 'w') as f:
        f.write(compare_markdown(doc))
    compare_chart(paths[2], doc)
    return paths


def _stat(stats: dict[str, Any] | None, digits: int = 2) -> str:
    """'median [min-max]' of a stats dict."""
    if not stats:
        return '-'
    return (f'{fmt_num(stats["median"], digits)} [{fmt_num(stats["min"], digits)}-'
            f'{fmt_num(stats["max"], digits)}]')


def compare_markdown(doc: dict[str, Any]) -> str:
    """Render the comparison as Markdown: one row per configuration, then notes."""
    lines = []
    if doc['random_weights']:
        lines += [f'> **{RANDOM_BANNER}**', '']
    machine = doc['machine']
    lines += [f'# vton_bench --compare {",".join(r["name"] for r in doc["results"])}', '',
              f'{doc["base"]}, {doc["repeats"]} interleaved rounds, seed {doc["seed"]}; '
              f'{machine["device_name"]} ({machine["torch_threads"]} threads), torch '
              f'{machine["torch"]}; load average {machine.get("load_average_start")} -> '
              f'{machine.get("load_average_end")}. Seconds: median [min-max] over rounds.',
              '']
    stages = ('preprocess', 'vae_encode', 'denoise', 'vae_decode')
    header = (['config'] + list(stages) + ['total s', 'speed-up', 'UNet forwards (full)',
                                           'batches', 'overhead %', 'peak MB',
                                           'max diff', 'PSNR dB', 'SSIM'])
    lines += ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for r in doc['results']:
        dev = r.get('vs_paper') or {}
        psnr = dev.get('psnr_db')
        cells = ([f'**{r["name"]}**'] + [fmt_s(r['timings'][k]['median']) for k in stages]
                 + [_stat(r['timings']['total'], 1), _stat(r.get('speedup'), 2),
                    f'{r["unet"]["forwards"]} ({r["unet"]["full"]})' if r['overhead_pct']
                    else '- (onnxruntime)',
                    ', '.join(f'{n}x b{b}' for b, n in r['unet']['batch_sizes'].items()),
                    fmt_num((r['overhead_pct'] or {}).get('median'), 1),
                    fmt_num(r['memory']['peak_mb'], 0),
                    f'{dev["max_abs_diff"]}/255' if dev else '-',
                    ('inf' if dev and psnr is None else fmt_num(psnr, 1)),
                    f'{dev["ssim"]:.4f}' if dev else '-'])
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines += ['', '## Configurations', '']
    for r in doc['results']:
        settings = ', '.join(f'{k}={v}' for k, v in r['settings'].items()) or 'defaults'
        lines.append(f'- **{r["name"]}**: {r["description"]} ({settings}; garment '
                     f'{"cached" if r["garment_cached"] else "encoded every run"}; '
                     f'{"deterministic" if r["deterministic"] else "NOT deterministic"} '
                     'over rounds)')
    seg = doc.get('segmentation') or {}
    if seg:
        lines += ['', '## Segmentation (camera frames)', '']
        for backend, entry in seg.items():
            fps = entry['fps']
            lines.append(f'- {backend}: {fmt_num(fps, 1) if fps else "-"} fps on '
                         f'{entry["frame"]} frames ({entry["note"]})')
    lines += ['', '## Notes', ''] + [f'- {n}' for n in doc['notes']]
    return '\n'.join(lines) + '\n'


def compare_chart(path: str, doc: dict[str, Any]) -> None:
    """Stacked per-stage seconds per configuration, speed-up vs paper above each bar."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from vton_ros.bench.report import STAGE_COLORS

    results = doc['results']
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(results), 4.5))
    names = [r['name'] for r in results]
    bottom = np.zeros(len(results))
    for stage in ('preprocess', 'vae_encode', 'denoise', 'vae_decode'):
        values = np.array([r['timings'][stage]['median'] for r in results])
        ax.bar(names, values, bottom=bottom, label=stage, color=STAGE_COLORS[stage])
        bottom += values
    for i, r in enumerate(results):
        speedup = r.get('speedup')
        text = f'{fmt_s(bottom[i])} s' + (f'\n{speedup["median"]:.2f}x' if speedup else '')
        ax.text(i, bottom[i], text, ha='center', va='bottom', fontsize=9)
    ax.set_ylabel('seconds (median)')
    ax.set_ylim(0, bottom.max() * 1.25)
    title = f'vton_bench --compare, {doc["base"]}'
    if doc['random_weights']:
        title = 'RANDOM WEIGHTS: ' + title
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
