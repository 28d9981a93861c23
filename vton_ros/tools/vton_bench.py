"""
vton_bench: time the try-on pipeline per stage, sweep settings, report against the FLOP floor.

    vton_bench --random-weights --sweep stages --out out/bench        # no weights needed
    vton_bench --sweep all --device cuda --out out/bench_gpu            # real weights
    vton_bench --random-weights --sweep all --repeats 1 --out out/bench_cpu
    vton_bench --random-weights --compare paper,exact-fastest,fast --out out/bench_compare

Writes results.json, report.md and PNG charts into --out. Real weights are used unless
--random-weights is given (full-size models with random values: same shapes, FLOPs, time
and memory, noise images; said in every output). On a CPU the sweeps run at reduced sizes
(--profile reduced, stated in the report); --profile full uses the paper's sizes.
"""

import argparse
import logging
import sys
import time

PROFILES = ('auto', 'full', 'reduced')
SWEEP_CHOICES = ('stages', 'precision', 'resolution', 'steps', 'memory', 'all')


def parse_size(text: str) -> tuple[int, int]:
    """Parse 'HxW' (e.g. '512x384') into (height, width)."""
    try:
        height, width = (int(v) for v in text.lower().split('x'))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f'expected HEIGHTxWIDTH such as 512x384, got '
                                         f'{text!r}') from err
    if height <= 0 or width <= 0 or height % 8 or width % 8:
        raise argparse.ArgumentTypeError(f'{text}: height and width must be positive '
                                         'multiples of 8')
    return height, width


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """Parse 'HxW,HxW,...'."""
    return tuple(parse_size(t) for t in text.split(',') if t)


def parse_ints(text: str) -> tuple[int, ...]:
    """Parse 'N,N,...' into positive ints."""
    try:
        values = tuple(int(t) for t in text.split(',') if t)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f'expected comma-separated integers, got {text!r}'
                                         ) from err
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f'expected positive integers, got {text!r}')
    return values


class DefaultsOnce(argparse.ArgumentDefaultsHelpFormatter):
    """Append '(default: X)' unless the help already says it or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ''
        if 'default' in text or action.default in (None, False):
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags."""
    from vton_ros.pipeline import weights

    ap = argparse.ArgumentParser(prog='vton_bench', description=__doc__.strip().split('\n')[0],
                                 formatter_class=DefaultsOnce)
    ap.add_argument('--device', default='auto', help='auto | cpu | cuda[:N]')
    ap.add_argument('--precision', default='bf16', choices=('fp32', 'fp16', 'bf16'))
    ap.add_argument('--height', type=int, default=512, help='output height (multiple of 8)')
    ap.add_argument('--width', type=int, default=384, help='output width (multiple of 8)')
    ap.add_argument('--steps', type=int, default=10, help='denoising steps')
    ap.add_argument('--scheduler', default='dpmpp_2m', help='ddim | dpmpp_2m | ...')
    ap.add_argument('--guidance', type=float, default=2.5,
                    help='guidance scale (> 1: classifier-free guidance, UNet batch 2)')
    ap.add_argument('--sweep', action='append', choices=SWEEP_CHOICES,
                    help='what to measure; repeatable (default: stages)')
    ap.add_argument('--repeats', type=int,
                    help='timed runs per configuration (default: 3; 2 in the reduced profile)')
    ap.add_argument('--warmup', type=int, default=1,
                    help='untimed runs per new pipeline/size (excluded from the statistics)')
    ap.add_argument('--warmup-steps', type=int, default=1,
                    help="denoising steps of a warm-up run (at most the configuration's)")
    ap.add_argument('--out', default='out/bench', help='report folder (created)')
    ap.add_argument('--random-weights', action='store_true',
                    help='full-size models with RANDOM weights (no download, noise images)')
    ap.add_argument('--base-model', default=weights.DEFAULT_BASE_MODEL,
                    help='SD1.5 inpainting: hub id or folder')
    ap.add_argument('--vae', default=weights.DEFAULT_VAE, help='VAE: hub id or folder')
    ap.add_argument('--attn-ckpt', default=weights.DEFAULT_ATTN_CKPT,
                    help='CatVTON attention weights: hub id or folder')
    ap.add_argument('--attn-version', default='mix', choices=tuple(weights.ATTN_VERSIONS))
    ap.add_argument('--tiny-vae', default=weights.DEFAULT_TINY_VAE,
                    help='tiny decoder (TAESD) for configurations with decoder tiny')
    ap.add_argument('--compare', metavar='NAMES',
                    help='instead of sweeps: run named configurations interleaved on the same '
                         'inputs and seed (paper, exact-fastest, fast; one lever each: '
                         'guidance-interval, deepcache, tiny-decoder, tiny-encoder, '
                         'channels-last; the profiles tryon and fast_cpu; onnxruntime (needs '
                         '--onnx-dir); offload-model, offload-sequential) and write '
                         'compare.json/.md/.png')
    ap.add_argument('--pairs', metavar='DIR',
                    help='with --compare: instead of timing, run each configuration once per '
                         'held-out pair of a make_tryon_data folder on a trained model and '
                         'write quality.json/.md/.png (PSNR/SSIM vs paper and target, colour)')
    ap.add_argument('--pairs-limit', type=int, default=0, help='use the first N pairs (0: all)')
    ap.add_argument('--onnx-dir', help='export_onnx folder for the onnxruntime configuration '
                    "(exported at the bench's size and precision)")
    ap.add_argument('--threads', type=int, default=0, help='CPU threads (0: torch default)')
    ap.add_argument('--cudnn-benchmark', action='store_true', help='cuDNN autotuning (CUDA)')
    ap.add_argument('--profile', default='auto', choices=PROFILES,
                    help='sweep sizes: full = paper sizes, reduced = CPU-friendly sizes, '
                         'auto = reduced on CPU, full on CUDA')
    ap.add_argument('--sizes', type=parse_sizes, help='resolution sweep sizes, e.g. '
                    '1024x768,512x384,256x192 (overrides the profile)')
    ap.add_argument('--sweep-size', type=parse_size,
                    help='size of the precision sweep (overrides the profile)')
    ap.add_argument('--steps-size', type=parse_size,
                    help='size of the steps sweep (overrides the profile)')
    ap.add_argument('--sweep-steps', type=int,
                    help='steps of the precision and resolution sweeps (default --steps)')
    ap.add_argument('--steps-list', type=parse_ints, help='steps sweep (default 50,20,15,10)')
    ap.add_argument('--schedulers', default='ddim,dpmpp_2m', help='steps sweep schedulers')
    ap.add_argument('--memory-size', type=parse_size, help='memory sweep size')
    ap.add_argument('--memory-steps', type=int, help='memory sweep steps')
    ap.add_argument('--cpu-fp16', action='store_true',
                    help='measure fp16 in the precision sweep on CPU (very slow; else skipped)')
    ap.add_argument('--segmentation', default='pose,unet',
                    help="mask backends to time: 'pose,unet', 'pose', 'unet' or 'none'")
    ap.add_argument('--seg-checkpoint', help='trained U-Net checkpoint (default: random '
                    'weights of the real shape at the try-on size)')
    ap.add_argument('--no-overhead', action='store_true',
                    help='skip timing the bare model forwards in the stages sweep')
    ap.add_argument('--seed', type=int, default=0, help='noise and random-weight seed')
    ap.add_argument('--replot', metavar='RESULTS_JSON',
                    help='only rewrite report.md and the charts from a results.json into --out')
    return ap


def make_plan(opts: argparse.Namespace, base, device_type: str):
    """Return the SweepPlan of the profile with the command-line overrides applied."""
    from dataclasses import replace

    from vton_ros.bench.plan import default_plan

    reduced = opts.profile == 'reduced' or (opts.profile == 'auto' and device_type == 'cpu')
    plan = default_plan(base, reduced)
    overrides = {}
    for name in ('sizes', 'sweep_size', 'steps_size', 'sweep_steps', 'steps_list',
                 'memory_size', 'memory_steps'):
        value = getattr(opts, name)
        if value is not None:
            overrides[name] = value
    overrides['schedulers'] = tuple(s for s in opts.schedulers.split(',') if s)
    return replace(plan, **overrides)


def print_stage_table(result: dict) -> None:
    """Print one configuration's stage medians, GFLOP and GFLOP/s."""
    from vton_ros.bench.report import fmt_num, fmt_s

    print(f'\n{result["label"]} (median of {result["timings"]["total"]["n"]} runs)')
    print(f'  {"stage":<14}{"median s":>10}{"min s":>9}{"max s":>9}{"GFLOP":>11}'
          f'{"GFLOP/s":>10}')
    for key, stats in result['timings'].items():
        flops = result['flops_g'].get(key)
        rate = result['gflops_per_s'].get(key)
        print(f'  {key:<14}{fmt_s(stats["median"]):>10}{fmt_s(stats["min"]):>9}'
              f'{fmt_s(stats["max"]):>9}{fmt_num(flops):>11}'
              f'{fmt_num(rate):>10}')
    for stage, row in (result.get('overhead') or {}).items():
        print(f'  overhead {stage}: pipeline {fmt_s(row["pipeline_s"])} s vs bare forwards '
              f'{fmt_s(row["raw_s"])} s ({row["overhead_pct"]:+.1f} %)')


def main(args: list[str] | None = None) -> int:
    """Entry point of the vton_bench console script."""
    opts = build_parser().parse_args(args)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    started = time.perf_counter()
    from vton_ros.bench import report
    from vton_ros.bench.compare import parse_names
    if opts.replot:
        return replot(opts.replot, opts.out)
    from vton_ros.bench.plan import describe_plan, plan_runs, RunConfig, SWEEPS
    from vton_ros.bench.sweeps import BenchRunner, PipelineSource, run_plan
    from vton_ros.bench.timing import load_average, machine_info
    from vton_ros.pipeline.device import configure_torch, resolve_device
    from vton_ros.pipeline.offload import pin_mmap_threshold
    from vton_ros.pipeline.schedulers import check_scheduler_name
    from vton_ros.pipeline.weights import ModelNotFoundError

    sweeps = tuple(dict.fromkeys(opts.sweep or ['stages']))
    sweeps = SWEEPS if 'all' in sweeps else sweeps
    segmentation = () if opts.segmentation == 'none' else tuple(
        s for s in opts.segmentation.split(',') if s)
    try:
        device = resolve_device(opts.device)
        configure_torch(device, cudnn_benchmark=opts.cudnn_benchmark, threads=opts.threads)
        for name in [opts.scheduler] + opts.schedulers.split(','):
            check_scheduler_name(name)
        base = RunConfig(height=opts.height, width=opts.width, steps=opts.steps,
                         scheduler=opts.scheduler, precision=opts.precision,
                         guidance_scale=opts.guidance)
        plan = make_plan(opts, base, device.type)
        runs = plan_runs(sweeps, base, plan, device.type, cpu_fp16=opts.cpu_fp16)
        names = parse_names(opts.compare) if opts.compare else ()
        if device.type == 'cpu' and 'offload-sequential' in names:
            pin_mmap_threshold()  # process-wide, as tryon_server does for offload sequential
        source = PipelineSource(device, random_weights=opts.random_weights,
                                base_model=opts.base_model, vae=opts.vae,
                                attn_ckpt=opts.attn_ckpt, attn_version=opts.attn_version,
                                tiny_vae=opts.tiny_vae, seed=opts.seed,
                                onnx_dir=opts.onnx_dir)
        repeats = opts.repeats or (2 if plan.reduced else 3)
        runner = BenchRunner(source, repeats=repeats, warmup=opts.warmup,
                             warmup_steps=opts.warmup_steps, segmentation=segmentation,
                             seg_checkpoint=opts.seg_checkpoint, seed=opts.seed)
    except ModelNotFoundError as err:
        print(f'vton_bench: error: real weights not found: {err}\n'
              'Fix: run `fetch_weights` (on a machine with internet, then copy the cache or '
              'folders here and pass --base-model/--vae/--attn-ckpt), or pass '
              '--random-weights to time full-size RANDOM weights.', file=sys.stderr)
        return 2
    except ValueError as err:
        print(f'vton_bench: error: {err}', file=sys.stderr)
        return 2
    if source.random_weights:
        print('=' * 78)
        print(f'{report.RANDOM_BANNER}\n{source.weights}')
        print('=' * 78, flush=True)
    machine = machine_info(device)
    if names and opts.pairs:
        return quality(opts, source, base, names, started)
    if names:
        return compare(opts, runner, base, names, machine, started)
    print(f'vton_bench: {len(runs)} planned runs ({", ".join(sweeps)}) on {device} '
          f'({machine["device_name"]}, {machine["torch_threads"]} threads), profile '
          f'{"reduced" if plan.reduced else "full"}, out {opts.out}', flush=True)

    results = run_plan(runner, runs, base.precision, overhead=not opts.no_overhead)
    machine['load_average_end'] = load_average()
    settings = {
        'command': 'vton_bench ' + ' '.join(sys.argv[1:] if args is None else args),
        'sweeps': list(sweeps), 'profile': 'reduced' if plan.reduced else 'full',
        'base_config': base.label(), 'guidance_scale': opts.guidance,
        'repeats': repeats, 'warmup_runs': opts.warmup,
        'warmup_steps': opts.warmup_steps,
        'timing': ('pipeline TryOnResult.timings (perf_counter, CUDA synchronised per stage); '
                   'bare forwards (overhead table): once after the first timed run, CUDA '
                   'events on GPU, perf_counter on CPU; warm-up runs excluded; median and '
                   '[min-max] over repeats'),
        'memory': runner_memory_method(results),
        'flops': flops_method(),
        'garment_cache': 'cleared before every timed run (vae_encode encodes 2 images)',
        'segmentation': ', '.join(segmentation) or 'none',
        'seg_checkpoint': opts.seg_checkpoint,
        'sizes': [f'{h}x{w}' for h, w in plan.sizes],
        'sweep_size': f'{plan.sweep_size[0]}x{plan.sweep_size[1]}',
        'steps_size': f'{plan.steps_size[0]}x{plan.steps_size[1]}',
        'steps_list': list(plan.steps_list), 'schedulers': list(plan.schedulers),
        'memory_size': f'{plan.memory_size[0]}x{plan.memory_size[1]}',
        'memory_steps': plan.memory_steps, 'seed': opts.seed,
    }
    notes = describe_plan(plan, base, sweeps)
    notes += [f'{r["id"]} {r["label"]}: {r["status"]}: {r["skip_reason"]}' for r in results
              if r['status'] != 'ok']
    notes.append('safety_check is 0: the safety checker is off in this benchmark')
    doc = report.build_document(machine=machine, settings=settings, results=results,
                                random_weights=source.random_weights, weights=source.weights,
                                notes=notes, elapsed_s=time.perf_counter() - started)
    paths = report.write_reports(opts.out, doc)
    for result in results:
        if 'stages' in result.get('sweeps', []) and result['status'] == 'ok':
            print_stage_table(result)
    for note in notes:
        print(f'note: {note}')
    print(f'\nwrote {", ".join(paths)} in {doc["elapsed_s"]:.0f} s')
    if source.random_weights:
        print(f'*** {report.RANDOM_BANNER} ***')
    return 1 if any(r['status'] == 'failed' for r in results) else 0


def compare(opts: argparse.Namespace, runner, base, names: tuple[str, ...], machine: dict,
            started: float) -> int:
    """Run ``--compare``: the named configurations interleaved, then the reports."""
    from vton_ros.bench import compare as cmp
    from vton_ros.bench.report import fmt_num, RANDOM_BANNER
    from vton_ros.bench.timing import load_average

    repeats = opts.repeats or 3
    print(f'vton_bench --compare {",".join(names)}: {base.label()}, {repeats} interleaved '
          f'rounds on {machine["device_name"]} ({machine["torch_threads"]} threads)',
          flush=True)
    results = cmp.run_compare(runner, base, names, repeats=repeats,
                              warmup_steps=opts.warmup_steps, seed=opts.seed)
    segmentation = cmp.segmentation_fps(runner, base) if runner.segmentation else {}
    machine['load_average_end'] = load_average()
    notes = [f'{r["name"]}: the garment latent is cached before each run (vae_encode encodes '
             'the person only)' for r in results if r['garment_cached']]
    notes += ['speed-up: median [min-max] of paper/config total per interleaved round',
              'overhead %: (total - seconds inside model forwards) / total, forwards timed '
              'with hooks (UNet time_proj..conv_out, VAE encoder/decoder, tiny decoder)',
              'peak MB: ' + (results[0]['memory']['method'] if results else '-'),
              'max diff / PSNR / SSIM: the first round image against the paper image (same '
              'inputs and seed; PSNR inf = identical)']
    if runner.source.device.type == 'cpu' and 'offload-model' in names:
        notes.append('offload model on CPU is a no-op (weights already in host RAM): '
                     'offload-model equals paper here')
    doc = {'schema': 'vton_bench_compare/1', 'random_weights': runner.source.random_weights,
           'banner': RANDOM_BANNER if runner.source.random_weights else None,
           'weights': runner.source.weights, 'command': 'vton_bench ' + ' '.join(
               sys.argv[1:]), 'base': base.label(), 'repeats': repeats, 'seed': opts.seed,
           'machine': machine, 'results': results, 'segmentation': segmentation,
           'notes': notes, 'elapsed_s': time.perf_counter() - started}
    paths = cmp.write_compare_reports(opts.out, doc)
    print(cmp.compare_markdown(doc))
    for backend, entry in segmentation.items():
        print(f'segmentation {backend}: {fmt_num(entry["fps"], 1)} fps')
    print(f'wrote {", ".join(paths)} in {doc["elapsed_s"]:.0f} s')
    return 0


def quality(opts: argparse.Namespace, source, base, names: tuple[str, ...],
            started: float) -> int:
    """Run ``--compare NAMES --pairs DIR``: image quality of each configuration."""
    from vton_ros.bench import quality as q

    print(f'vton_bench --compare {",".join(names)} --pairs {opts.pairs}: {base.label()}',
          flush=True)
    try:
        found = q.run_quality(source, base, names, opts.pairs, opts.seed, opts.pairs_limit)
    except ValueError as err:
        print(f'vton_bench: error: {err}', file=sys.stderr)
        return 2
    panel = found.pop('panel')
    doc = {'schema': 'vton_bench_quality/1', 'weights': source.weights,
           'random_weights': source.random_weights, 'base': base.label(), 'seed': opts.seed,
           'command': 'vton_bench ' + ' '.join(sys.argv[1:]), **found,
           'elapsed_s': time.perf_counter() - started}
    paths = q.write_quality_reports(opts.out, doc, panel)
    print(q.quality_markdown(doc))
    print(f'wrote {", ".join(paths)} in {doc["elapsed_s"]:.0f} s')
    return 0


def replot(results_json: str, out_dir: str) -> int:
    """Rewrite report.md and the charts (and a copy of results.json) from a results file."""
    import json

    from vton_ros.bench import report

    try:
        with open(results_json) as f:
            doc = json.load(f)
    except (OSError, ValueError) as err:
        print(f'vton_bench: error: cannot read {results_json}: {err}', file=sys.stderr)
        return 2
    if doc.get('schema') != report.SCHEMA:
        print(f'vton_bench: error: {results_json} is not a {report.SCHEMA} results file',
              file=sys.stderr)
        return 2
    paths = report.write_reports(out_dir, doc)
    print(f'wrote {", ".join(paths)}')
    if doc['random_weights']:
        print(f'*** {report.RANDOM_BANNER} ***')
    return 0


def runner_memory_method(results: list[dict]) -> str:
    """Return how memory was measured (from the first measured configuration)."""
    for result in results:
        if result['status'] == 'ok':
            return result['memory']['method']
    return '-'


def flops_method() -> str:
    """Return the FLOP counting method text."""
    from vton_ros.bench.flops import FLOP_METHOD

    return FLOP_METHOD


if __name__ == '__main__':
    sys.exit(main())
