"""
``vton_bench --compare NAMES --pairs DIR``: what each configuration does to the image.

Runs every named configuration once per held-out pair of a ``make_tryon_data`` folder
(``test`` split: person wearing the garment = target, flat-lay garment, agnostic mask) on
a trained model, with the same seed, and the person's own pixels outside the mask
(repaint, as ``config/demo.yaml``). Against the ``paper`` image and against the target:
PSNR and SSIM on the mask's bounding box (the repainted region). The semantic colour
score is the share of the masked pixels that carry the garment's main hue
(:func:`vton_ros.training.tryon_eval.hue_share`); the target's own share is its ceiling.
"""

import json
import os
from typing import Any

import cv2
import numpy as np

from vton_ros.bench.compare import image_deviation, NAMED_CONFIGS, REFERENCE, run_config
from vton_ros.bench.plan import RunConfig
from vton_ros.bench.sweeps import PipelineSource
from vton_ros.training.tryon_data import load_pairs
from vton_ros.training.tryon_eval import hue_share

PANEL_PAIRS = 4  # pairs shown in quality.png
MIN_SATURATED = 0.15  # share of the cloth's pixels that must be coloured for a main hue


def main_colour(garment: np.ndarray) -> tuple[int, int, int] | None:
    """Return the median RGB of a flat-lay garment's most frequent hue (None: no colour)."""
    hsv = cv2.cvtColor(garment, cv2.COLOR_RGB2HSV_FULL).reshape(-1, 3).astype(int)
    cloth = ~((hsv[:, 1] < 0.12 * 255) & (hsv[:, 2] > 0.9 * 255))  # not the white sheet
    coloured = cloth & (hsv[:, 1] >= 0.25 * 255)
    if coloured.sum() < MIN_SATURATED * max(1, cloth.sum()):
        return None
    bins = hsv[coloured, 0] * 36 // 256
    top = np.bincount(bins, minlength=36).argmax()
    pixels = garment.reshape(-1, 3)[coloured][bins == top]
    return tuple(int(v) for v in np.median(pixels, axis=0))


def box(mask: np.ndarray) -> tuple[slice, slice]:
    """Bounding box of the mask's repainted pixels (>= 128)."""
    rows, cols = np.nonzero(mask >= 128)
    return slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)


def run_quality(source: PipelineSource, base: RunConfig, names: tuple[str, ...],
                pairs_dir: str, seed: int, limit: int = 0) -> dict[str, Any]:
    """Run the configurations over the pairs; return per-configuration means and images."""
    pairs = load_pairs(pairs_dir, 'test', base.height, base.width)
    count = len(pairs['target']) if limit <= 0 else min(limit, len(pairs['target']))
    colours = [main_colour(g) for g in pairs['garment'][:count]]
    target_colours = [None if c is None else hue_share(pairs['target'][i], pairs['mask'][i], c)
                      for i, c in enumerate(colours)]
    cfgs = {name: run_config(base, NAMED_CONFIGS[name]) for name in names}
    images: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for name, cfg in cfgs.items():
        pipe = source.pipeline(cfg)
        for i in range(count):
            pipe.garment_cache.clear()
            pipe.person_cache.clear()
            out = pipe(pairs['target'][i], pairs['garment'][i], pairs['mask'][i], seed=seed,
                       **dict(cfg.call_kwargs(), repaint=True))
            images[name].append(out.image)
    results = []
    for name in names:
        rows = []
        for i, image in enumerate(images[name]):
            region = box(pairs['mask'][i])
            row = {f'target_{k}': v for k, v in image_deviation(
                image[region], pairs['target'][i][region]).items()}
            if REFERENCE in names:
                row.update({f'paper_{k}': v for k, v in image_deviation(
                    image[region], images[REFERENCE][i][region]).items()})
            if colours[i] is not None:
                row['colour'] = hue_share(image, pairs['mask'][i], colours[i])
                row['target_colour'] = target_colours[i]
            rows.append(row)
        results.append({'name': name, 'label': cfgs[name].label(),
                        'settings': dict(NAMED_CONFIGS[name].resolved()),
                        **{k: _mean(rows, k) for k in sorted({k for r in rows for k in r})},
                        'identical_to_paper': sum(r.get('paper_max_abs_diff') == 0
                                                  for r in rows)})
    return {'pairs': count, 'coloured_pairs': sum(c is not None for c in colours),
            'results': results,
            'panel': _panel(pairs, images, names, min(PANEL_PAIRS, count))}


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    """Mean of a figure over the pairs that have it (identical images: PSNR capped at 99)."""
    values = [r[key] for r in rows if key in r]
    if key.endswith('psnr_db'):
        values = [99.0 if v is None else v for v in values]
    return float(np.mean(values)) if values else None


def _panel(pairs: dict[str, np.ndarray], images: dict[str, list[np.ndarray]],
           names: tuple[str, ...], count: int) -> np.ndarray:
    """Rows: pairs; columns: garment, target, then each configuration's image."""
    rows = [np.concatenate([pairs['garment'][i], pairs['target'][i]]
                           + [images[n][i] for n in names], axis=1) for i in range(count)]
    return np.concatenate(rows, axis=0)


def quality_markdown(doc: dict[str, Any]) -> str:
    """Render the quality table: one row per configuration."""
    def num(value: float | None, digits: int) -> str:
        return '-' if value is None else f'{value:.{digits}f}'

    lines = [f'# vton_bench --compare {",".join(r["name"] for r in doc["results"])} '
             f'--pairs', '', f'{doc["weights"]}; {doc["base"]}; {doc["pairs"]} held-out pairs '
             f'({doc["coloured_pairs"]} with a coloured garment), seed {doc["seed"]}, repaint. '
             "PSNR/SSIM on the mask's bounding box, mean over pairs (identical: 99 dB).", '',
             '| config | PSNR vs paper dB | SSIM vs paper | identical to paper | PSNR vs '
             'target dB | SSIM vs target | colour score (target) |', '|---' * 7 + '|']
    for r in doc['results']:
        lines.append(f'| **{r["name"]}** | {num(r.get("paper_psnr_db"), 1)} | '
                     f'{num(r.get("paper_ssim"), 3)} | {r["identical_to_paper"]}/{doc["pairs"]} '
                     f'| {num(r["target_psnr_db"], 1)} | {num(r["target_ssim"], 3)} | '
                     f'{num(r.get("colour"), 2)} ({num(r.get("target_colour"), 2)}) |')
    lines += ['', 'Columns of quality.png: garment, target, then ' +
              ', '.join(r['name'] for r in doc['results']) + '.']
    return '\n'.join(lines) + '\n'


def write_quality_reports(out_dir: str, doc: dict[str, Any], panel: np.ndarray) -> list[str]:
    """Write quality.json, quality.md and quality.png (the panel) into ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, f'quality.{ext}') for ext in ('json', 'md', 'png')]
    with open(paths[0], 'w') as f:
        json.dump(doc, f, indent=2)
        f.write('\n')
    with open(paths[1], 'w') as f:
        f.write(quality_markdown(doc))
    big = cv2.resize(panel, (panel.shape[1] * 2, panel.shape[0] * 2),
                     interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(paths[2], cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    return paths
