"""
Benchmark reports: results.json, report.md (the paper's Tables 2-5 and more), PNG charts.

Input is the results document built by :func:`build_document` (plain dicts, as in
results.json). When the weights are random, every file says so: the ``random_weights``
field and ``banner`` in results.json, a banner at the top of report.md, chart titles.
"""

import json
import logging
import os
from typing import Any

from vton_ros.pipeline.options import TIMING_KEYS

_LOG = logging.getLogger(__name__)

SCHEMA = 'vton_bench/1'
RANDOM_BANNER = ('RANDOM WEIGHTS: the models have random values, not trained ones; the '
                 'try-on images are noise. See "weights" for their size.')
HARDWARE_NOTE = ('Numbers are from this machine only. GPU and Jetson numbers come only from '
                 'running vton_bench on those machines.')
STAGE_ORDER = ('segmentation', 'preprocess', 'vae_encode', 'denoise', 'vae_decode',
               'safety_check')
STAGE_COLORS = {'segmentation': '#8c564b', 'preprocess': '#7f7f7f', 'vae_encode': '#1f77b4',
                'denoise': '#d62728', 'vae_decode': '#2ca02c', 'safety_check': '#9467bd'}


def build_document(*, machine: dict[str, Any], settings: dict[str, Any],
                   results: list[dict[str, Any]], random_weights: bool, weights: str,
                   notes: list[str], elapsed_s: float) -> dict[str, Any]:
    """Assemble the results.json document."""
    sweeps: dict[str, list[str]] = {}
    for result in results:
        for sweep in result.get('sweeps', []):
            sweeps.setdefault(sweep, []).append(result['id'])
    return {'schema': SCHEMA, 'random_weights': bool(random_weights),
            'banner': RANDOM_BANNER if random_weights else None, 'weights': weights,
            'machine': machine, 'settings': settings, 'timing_keys': list(TIMING_KEYS),
            'sweeps': sweeps, 'configs': results, 'notes': list(notes),
            'hardware_note': HARDWARE_NOTE, 'elapsed_s': elapsed_s}


def write_reports(out_dir: str, doc: dict[str, Any]) -> list[str]:
    """Write results.json, report.md and the charts into ``out_dir``; return the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, 'results.json'), os.path.join(out_dir, 'report.md')]
    with open(paths[0], 'w') as f:
        json.dump(doc, f, indent=2, default=_json_default)
        f.write('\n')
    with open(paths[1], 'w') as f:
        f.write(markdown(doc))
    paths += write_charts(out_dir, doc)
    return paths


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


# --------------------------------------------------------------------------- formatting

def fmt_s(value: float | None) -> str:
    """Seconds with about three significant digits ('-' for None)."""
    if value is None:
        return '-'
    if value >= 100:
        return f'{value:.0f}'
    if value >= 10:
        return f'{value:.1f}'
    if value >= 1:
        return f'{value:.2f}'
    return f'{value:.3f}'


def fmt_num(value: float | None, digits: int = 1) -> str:
    """Format a number with ``digits`` decimals (two significant digits below 1)."""
    if value is None:
        return '-'
    if 0 < abs(value) < 1:
        return f'{value:.2g}'
    return f'{value:,.{digits}f}'


def _spread(stats: dict[str, Any] | None) -> str:
    """Return 'median [min-max]' of a Stats dict."""
    if not stats:
        return '-'
    if stats['n'] == 1:
        return f'{fmt_s(stats["median"])} (n=1)'
    return f'{fmt_s(stats["median"])} [{fmt_s(stats["min"])}-{fmt_s(stats["max"])}]'


def _median(result: dict[str, Any], key: str) -> float | None:
    stats = result.get('timings', {}).get(key)
    return stats['median'] if stats else None


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
    return '\n'.join(lines) + '\n'


def _sweep(doc: dict[str, Any], name: str) -> list[dict[str, Any]]:
    ids = doc['sweeps'].get(name, [])
    by_id = {r['id']: r for r in doc['configs']}
    return [by_id[i] for i in ids]


def _status(result: dict[str, Any]) -> str:
    if result['status'] == 'ok':
        return 'measured'
    return f'{result["status"].upper()}: {result["skip_reason"]}'


# --------------------------------------------------------------------------- markdown

def markdown(doc: dict[str, Any]) -> str:
    """Return report.md for a results document."""
    parts = ['# vton_bench report\n']
    if doc['random_weights']:
        parts.append(f'> **{doc["banner"]}**\n>\n> Weights: {doc["weights"]}\n')
    else:
        parts.append(f'Weights: {doc["weights"]}\n')
    parts.append(f'> {doc["hardware_note"]}\n')
    machine, settings = doc['machine'], doc['settings']
    parts.append('## Machine\n')
    parts.append(_table(['item', 'value'], [[k, v] for k, v in machine.items()]))
    parts.append('\n## Method\n')
    rows = [[k, v] for k, v in settings.items()]
    parts.append(_table(['setting', 'value'], rows))
    parts.append(f'\nWhole run: {fmt_s(doc["elapsed_s"])} s wall clock.\n')
    for name, section in (('stages', _stages_section), ('precision', _precision_section),
                          ('resolution', _resolution_section), ('steps', _steps_section),
                          ('memory', _memory_section)):
        results = _sweep(doc, name)
        if results:
            parts.append(section(results))
    overhead = [r for r in doc['configs'] if r.get('overhead')]
    if overhead:
        parts.append(_overhead_section(overhead))
    parts.append(_all_section(doc['configs']))
    if doc['notes']:
        parts.append('\n## Notes\n\n' + ''.join(f'- {n}\n' for n in doc['notes']))
    return '\n'.join(parts)


def _stages_section(results: list[dict[str, Any]]) -> str:
    out = ['\n## Table 2: time per stage\n']
    for result in results:
        out.append(f'\n### {result["label"]}\n')
        if result['status'] != 'ok':
            out.append(_status(result) + '\n')
            continue
        timings, flops, rates = result['timings'], result['flops_g'], result['gflops_per_s']
        total = timings['total']['median']
        cfg = result['config']
        rows = []
        seg = result.get('segmentation', {})
        if seg.get('unet', {}).get('stats'):
            unet = seg['unet']
            rows.append([f'segmentation (U-Net ResNet-50 {unet["height"]}x{unet["width"]}, '
                         f'{"random" if unet["weights"].startswith("RANDOM") else "trained"})',
                         _spread(unet['stats']), '-', fmt_num(flops.get('segmentation')),
                         fmt_num(rates.get('segmentation'))])
        if seg.get('pose', {}).get('stats'):
            rows.append(['segmentation (pose backend, mediapipe)', _spread(seg['pose']['stats']),
                         '-', '-', '-'])
        labels = {'vae_encode': 'vae_encode (2 images)',
                  'denoise': f'denoise ({cfg["steps"]} steps x UNet batch {result["unet_batch"]})',
                  'total': 'total (pipeline)'}
        for key in TIMING_KEYS:
            share = timings[key]['median'] / total * 100 if total > 0 else 0.0
            rows.append([labels.get(key, key), _spread(timings[key]), f'{share:.1f}',
                         fmt_num(flops.get(key)) if key in flops else '-',
                         fmt_num(rates.get(key)) if key in rates else '-'])
        if 'total_with_segmentation_s' in result:
            rows.append([f'total incl. segmentation ({result["segmentation_backend"]})',
                         fmt_s(result['total_with_segmentation_s']), '-', '-', '-'])
        out.append(_table(['stage', 'median s [min-max]', '% of total', 'GFLOP', 'GFLOP/s'],
                          rows))
        if result.get('nan_recovered_runs'):
            out.append(f'\n**{result["nan_recovered_runs"]} of {timings["total"]["n"]} timed '
                       'runs hit the NaN/Inf guard of the VAE decode and redid it in fp32 '
                       '(included in vae_decode).**\n')
        out.append(f'\nPeak memory: {fmt_num(result["memory"]["peak_mb"], 0)} MB '
                   f'(+{fmt_num(result["memory"]["increase_mb"], 0)} MB during the runs). '
                   f'UNet forward: {fmt_num(flops["unet_forward"])} GFLOP; per denoising '
                   f'step {fmt_s(result["per_step_s"])} s.\n')
    return ''.join(out)


def _row_common(result: dict[str, Any]) -> list[str]:
    if result['status'] != 'ok':
        return ['-'] * 6
    rates = result['gflops_per_s']
    return [_spread(result['timings']['total']), fmt_s(_median(result, 'denoise')),
            fmt_s(result['per_step_s']), fmt_s(_median(result, 'vae_encode')),
            fmt_s(_median(result, 'vae_decode')), fmt_num(rates.get('denoise'))]


COMMON_HEADER = ['total s [min-max]', 'denoise s', 's/step', 'vae_encode s', 'vae_decode s',
                 'denoise GFLOP/s']


def _precision_section(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        c = r['config']
        rows.append([c['precision'], f'{c["height"]}x{c["width"]}', c['steps']]
                    + _row_common(r) + [_peak(r), _status(r)])
    return ('\n## Table 3: precision\n\n'
            + _table(['precision', 'size', 'steps'] + COMMON_HEADER + ['peak MB', 'status'],
                     rows))


def _resolution_section(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        c = r['config']
        seg = r.get('segmentation', {}).get('unet', {}) if r['status'] == 'ok' else {}
        unet_g = fmt_num(r['flops_g']['unet_forward']) if r['status'] == 'ok' else '-'
        rows.append([f'{c["height"]}x{c["width"]}', c['precision'], c['steps']]
                    + _row_common(r) + [_spread(seg.get('stats')), unet_g, _peak(r),
                                        _status(r)])
    return ('\n## Table 4: resolution\n\n'
            + _table(['size', 'precision', 'steps'] + COMMON_HEADER
                     + ['segmentation (U-Net) s', 'GFLOP per UNet forward', 'peak MB',
                        'status'], rows))


def _steps_section(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        c = r['config']
        rows.append([c['scheduler'], c['steps'], f'{c["height"]}x{c["width"]}', c['precision']]
                    + _row_common(r) + [_status(r)])
    return ('\n## Table 5: scheduler and steps\n\n'
            + _table(['scheduler', 'steps', 'size', 'precision'] + COMMON_HEADER + ['status'],
                     rows))


def _memory_section(results: list[dict[str, Any]]) -> str:
    base = next((r for r in results if r['status'] == 'ok'
                 and r['config']['attention_slicing'] == 'none' and not r['config']['vae_slicing']
                 and not r['config']['vae_tiling'] and r['config']['memory_fraction'] >= 1.0),
                None)
    base_total = _median(base, 'total') if base else None
    rows = []
    for r in results:
        c = r['config']
        cost = '-'
        if r['status'] == 'ok' and base_total:
            cost = f'{(_median(r, "total") - base_total) / base_total * 100:+.1f}'
        mem = r.get('memory', {})
        slicing = 'off' if c['attention_slicing'] == 'none' else c['attention_slicing']
        label = (f'attention slicing {slicing}, VAE slicing '
                 f'{"on" if c["vae_slicing"] else "off"}, VAE tiling '
                 f'{"on" if c["vae_tiling"] else "off"}, memory fraction '
                 f'{c["memory_fraction"]:g}')
        rows.append([label, f'{c["height"]}x{c["width"]} {c["precision"]} {c["steps"]} steps',
                     _spread(r.get('timings', {}).get('total')),
                     fmt_s(_median(r, 'denoise')) if r['status'] == 'ok' else '-',
                     fmt_s(_median(r, 'vae_encode')) if r['status'] == 'ok' else '-',
                     fmt_s(_median(r, 'vae_decode')) if r['status'] == 'ok' else '-',
                     cost, fmt_num(mem.get('peak_mb'), 0), fmt_num(mem.get('increase_mb'), 0),
                     _status(r)])
    return ('\n## Memory settings\n\n'
            + _table(['settings', 'config', 'total s [min-max]', 'denoise s', 'vae_encode s',
                      'vae_decode s', 'time vs default %', 'peak MB', 'increase MB', 'status'],
                     rows)
            + '\nVAE slicing splits a batch into single images; the pipeline already encodes '
              'and decodes one image at a time, so it is not expected to change anything. '
              'VAE tiling only engages above the VAE tile size (256 px for the SD VAE).\n')


def _overhead_section(results: list[dict[str, Any]]) -> str:
    out = ['\n## Pipeline overhead vs bare model forwards\n\n'
           'The first timed run is followed by the same model forwards called directly on '
           'random tensors of the same shapes and dtype (denoise: the UNet once per step at the '
           'scheduler timesteps; vae_encode: two encodes; vae_decode: one decode). Overhead = '
           '(pipeline - bare) / bare, each bare measurement paired with the pipeline run just '
           'before it. The pipeline stages also include input conversion, '
           'CFG arithmetic, scheduler steps and the uint8 conversion.\n']
    for r in results:
        rows = [[stage, fmt_s(v['pipeline_s']), fmt_s(v['raw_s']),
                 fmt_num(v['overhead_pct'], 1), fmt_s(v.get('pipeline_median_s'))]
                for stage, v in r['overhead'].items()]
        out.append(f'\n{r["label"]}:\n\n')
        out.append(_table(['stage', 'pipeline s (paired run)', 'bare forwards s', 'overhead %',
                           'pipeline median s (all runs)'], rows))
    return ''.join(out)


def _all_section(results: list[dict[str, Any]]) -> str:
    rows = [[r['id'], r['label'], ', '.join(r.get('sweeps', [])),
             _spread(r.get('timings', {}).get('total')), _peak(r), _status(r)]
            for r in results]
    return '\n## All configurations\n\n' + _table(
        ['id', 'configuration', 'sweeps', 'total s [min-max]', 'peak MB', 'status'], rows)


def _peak(result: dict[str, Any]) -> str:
    return fmt_num(result.get('memory', {}).get('peak_mb'), 0)


# --------------------------------------------------------------------------- charts

def _title(doc: dict[str, Any], text: str) -> str:
    device = doc['machine'].get('device_name') or doc['machine'].get('device')
    title = f'{text}\n{device}'
    return f'RANDOM WEIGHTS - {title}' if doc['random_weights'] else title


def write_charts(out_dir: str, doc: dict[str, Any]) -> list[str]:
    """Write stages.png (stacked stage bars per configuration) and steps.png; return paths."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt

    paths = []
    measured = [r for r in doc['configs'] if r['status'] == 'ok']
    if measured:
        fig, ax = plt.subplots(figsize=(10, 1.5 + 0.45 * len(measured)))
        labels = [f'{r["id"]}: {r["label"]}' for r in measured]
        left = [0.0] * len(measured)
        for stage in STAGE_ORDER:
            values = [_median(r, stage) or 0.0 for r in measured]
            if not any(values):
                continue
            ax.barh(labels, values, left=left, label=stage, color=STAGE_COLORS[stage])
            left = [a + b for a, b in zip(left, values)]
        ax.invert_yaxis()
        ax.set_xlabel('median seconds per try-on')
        ax.set_title(_title(doc, 'Time per stage'), fontsize=10)
        ax.legend(fontsize=8, loc='lower right')
        ax.tick_params(axis='y', labelsize=7)
        fig.tight_layout()
        paths.append(os.path.join(out_dir, 'stages.png'))
        fig.savefig(paths[-1], dpi=110, bbox_inches='tight')
        plt.close(fig)
    steps = [r for r in _sweep(doc, 'steps') if r['status'] == 'ok']
    if steps:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for scheduler in sorted({r['config']['scheduler'] for r in steps}):
            points = sorted((r['config']['steps'], _median(r, 'total'), _median(r, 'denoise'))
                            for r in steps if r['config']['scheduler'] == scheduler)
            xs = [p[0] for p in points]
            ax.plot(xs, [p[1] for p in points], 'o-', label=f'{scheduler} total')
            ax.plot(xs, [p[2] for p in points], 's--', label=f'{scheduler} denoise')
        size = f'{steps[0]["config"]["height"]}x{steps[0]["config"]["width"]}'
        ax.set_xlabel('denoising steps')
        ax.set_ylabel('median seconds per try-on')
        ax.set_title(_title(doc, f'Time vs steps ({size}, {steps[0]["config"]["precision"]})'),
                     fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(os.path.join(out_dir, 'steps.png'))
        fig.savefig(paths[-1], dpi=110, bbox_inches='tight')
        plt.close(fig)
    return paths
