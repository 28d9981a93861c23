"""
train_demo_model: train the tiny demo CatVTON from scratch on synthetic pairs.

    make_tryon_data --out data/tryon
    train_demo_model --data data/tryon --work out/demo_train --out models/demo

Stage 1 trains the VAE, stage 2 the UNet (CatVTON's objective); both resume from
WORK/checkpoint.pt after an interruption. Writes the model in the published layouts to OUT
and WORK/loss_curve.png. Uses --threads CPU threads (default 1).
"""

import argparse
import json
import logging
import os
import sys
import time
from typing import Iterable

from tqdm import tqdm


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags (defaults: the committed demo model)."""
    from vton_ros.training.tryon_trainer import DemoTrainConfig

    d = DemoTrainConfig('', '')
    ap = argparse.ArgumentParser(prog='train_demo_model',
                                 description=__doc__.strip().split('\n')[0])
    ap.add_argument('--data', required=True, help='dataset root (make_tryon_data --out)')
    ap.add_argument('--work', required=True, help='checkpoint and loss-curve folder')
    ap.add_argument('--out', required=True, help='model folder to write (e.g. models/demo)')
    ap.add_argument('--seed', type=int, default=d.seed)
    ap.add_argument('--height', type=int, default=d.height)
    ap.add_argument('--width', type=int, default=d.width)
    ap.add_argument('--vae-steps', type=int, default=d.vae_steps)
    ap.add_argument('--unet-steps', type=int, default=d.unet_steps)
    ap.add_argument('--vae-batch', type=int, default=d.vae_batch)
    ap.add_argument('--unet-batch', type=int, default=d.unet_batch)
    ap.add_argument('--checkpoint-every', type=int, default=d.checkpoint_every)
    ap.add_argument('--threads', type=int, default=1, help='torch CPU threads (default 1)')
    return ap


def _tqdm(iterable: Iterable, desc: str, total: int) -> Iterable:
    return tqdm(iterable, desc=desc, total=total, initial=getattr(iterable, 'start', 0),
                dynamic_ncols=True, mininterval=5.0)


def plot_losses(state: dict, path: str) -> None:
    """Save the VAE and UNet loss curves (raw and smoothed) as a PNG."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, key, title in zip(axes, ('vae_loss', 'unet_loss'),
                              ('VAE reconstruction (L1 + MSE)', 'UNet noise MSE')):
        values = np.asarray(state[key], np.float64)
        if values.size:
            ax.plot(values, alpha=0.3, lw=0.6)
            k = max(1, values.size // 50)
            ax.plot(np.arange(k - 1, values.size), np.convolve(values, np.ones(k) / k, 'valid'))
            ax.set_yscale('log')
        ax.set_title(title)
        ax.set_xlabel('step')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(args: list[str] | None = None) -> int:
    """Entry point of the train_demo_model console script."""
    opts = build_parser().parse_args(args)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    import torch

    from vton_ros.training.tryon_trainer import DemoTrainConfig, DemoTrainer

    torch.set_num_threads(opts.threads)
    config = DemoTrainConfig(opts.data, opts.work, opts.height, opts.width, opts.seed,
                             vae_steps=opts.vae_steps, vae_batch=opts.vae_batch,
                             unet_steps=opts.unet_steps, unet_batch=opts.unet_batch,
                             checkpoint_every=opts.checkpoint_every)
    start = time.perf_counter()
    try:
        trainer = DemoTrainer(config)
        if trainer.load_checkpoint():
            print(f'resuming at VAE step {trainer.state["vae_step"]}, '
                  f'UNet step {trainer.state["unet_step"]}')
    except ValueError as err:
        print(f'train_demo_model: error: {err}', file=sys.stderr)
        return 2
    trainer.train(progress=_tqdm)
    paths = trainer.export_model(opts.out)
    plot_losses(trainer.state, os.path.join(opts.work, 'loss_curve.png'))
    summary = {'seconds_this_run': round(time.perf_counter() - start, 1),
               'pairs': len(trainer.data['target']),
               'final_vae_loss_mean100': _tail_mean(trainer.state['vae_loss']),
               'final_unet_loss_mean100': _tail_mean(trainer.state['unet_loss']),
               'scaling_factor': trainer.state['scaling_factor'], 'config': vars(opts)}
    with open(os.path.join(opts.work, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=2))
    print('model written: ' + ', '.join(f'{k}={v}' for k, v in paths.items()))
    return 0


def _tail_mean(values: list, n: int = 100) -> float | None:
    return round(sum(values[-n:]) / len(values[-n:]), 5) if values else None


if __name__ == '__main__':
    sys.exit(main())
