"""
train_demo_taesd: distil a TAESD (AutoencoderTiny) from the demo model's VAE.

    make_tryon_data --out data/tryon
    train_demo_taesd --data data/tryon --vae models/demo/vae --out models/demo/taesd

Trains on the training split's targets, garments and masked persons, writes OUT in the
AutoencoderTiny layout (``catvton.tiny_vae`` reads it) and prints held-out figures on the
test split: PSNR of the tiny decoder (teacher latents) against the teacher's decode and the
image, and the tiny encoder's latent MSE. Uses --threads CPU threads (default 1).
"""

import argparse
import json
import logging
import sys
import time
from typing import Iterable

from tqdm import tqdm


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags (defaults: the committed demo TAESD)."""
    from vton_ros.training.distill_taesd import DistillConfig, TARGETS

    d = DistillConfig()
    ap = argparse.ArgumentParser(prog='train_demo_taesd',
                                 description=__doc__.strip().split('\n')[0])
    ap.add_argument('--data', required=True, help='dataset root (make_tryon_data --out)')
    ap.add_argument('--vae', required=True, help='teacher AutoencoderKL folder')
    ap.add_argument('--out', required=True, help='TAESD folder to write')
    for name in ('steps', 'batch', 'seed', 'channels', 'height', 'width'):
        ap.add_argument('--' + name, type=int, default=getattr(d, name),
                        help=f'default {getattr(d, name)}')
    ap.add_argument('--target', choices=TARGETS, default=d.target,
                    help='what the decoder learns to give: the teacher decode, the image, both')
    ap.add_argument('--threads', type=int, default=1, help='torch CPU threads (default 1)')
    return ap


def _tqdm(iterable: Iterable, desc: str, total: int) -> Iterable:
    return tqdm(iterable, desc=desc, total=total, dynamic_ncols=True, mininterval=5.0)


def main(args: list[str] | None = None) -> int:
    """Entry point of the train_demo_taesd console script."""
    opts = build_parser().parse_args(args)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    from vton_ros.training.distill_taesd import DistillConfig, image_pool, TaesdDistiller

    from diffusers import AutoencoderKL  # noqa: I100 (after the training package's shim)
    import torch

    torch.set_num_threads(opts.threads)
    config = DistillConfig(steps=opts.steps, batch=opts.batch, seed=opts.seed,
                           channels=opts.channels, target=opts.target, height=opts.height,
                           width=opts.width)
    start = time.perf_counter()
    try:
        teacher = AutoencoderKL.from_pretrained(opts.vae)
        pool = image_pool(opts.data, 'train', opts.height, opts.width)
        held_out = image_pool(opts.data, 'test', opts.height, opts.width)
        distiller = TaesdDistiller(teacher, pool, config)
    except (OSError, ValueError) as err:
        print(f'train_demo_taesd: error: {err}', file=sys.stderr)
        return 2
    distiller.train(progress=_tqdm)
    seconds = time.perf_counter() - start
    distiller.save(opts.out)
    losses = distiller.losses[-100:] or [(float('nan'), float('nan'))]
    summary = {'seconds': round(seconds, 1), 'train_images': len(pool),
               'held_out_images': len(held_out),
               'parameters': sum(p.numel() for p in distiller.student.parameters()),
               'final_latent_mse_mean100': round(sum(e for e, _ in losses) / len(losses), 5),
               'final_image_loss_mean100': round(sum(d for _, d in losses) / len(losses), 5),
               'held_out': distiller.evaluate(held_out), 'config': vars(opts)}
    print(json.dumps(summary, indent=2))
    print(f'TAESD written to {opts.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
