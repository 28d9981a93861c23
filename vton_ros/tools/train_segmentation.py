"""
train_segmentation: train the agnostic-mask U-Net (ResNet-50) on a VITON-HD-layout dataset.

    train_segmentation --data VITON_HD --out runs/seg --epochs 20 --batch-size 8
    train_segmentation --data VITON_HD --out runs/seg --epochs 30 --resume

Dice loss; IoU on the test split after each epoch; writes OUT/best.pt (best val IoU),
OUT/last.pt (resumable) and OUT/metrics.json. Encoder weights are never downloaded.
"""

import argparse
import logging
import sys
from typing import Iterable

from tqdm import tqdm

from vton_ros.pipeline.masks import CLOTH_TYPES


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags."""
    ap = argparse.ArgumentParser(prog='train_segmentation',
                                 description=__doc__.strip().split('\n')[0])
    ap.add_argument('--data', required=True, help='VITON-HD root (train/ and test/ splits)')
    ap.add_argument('--out', required=True, help='output folder for checkpoints and metrics')
    ap.add_argument('--epochs', type=int, default=20, help='total epochs (also on --resume)')
    ap.add_argument('--batch-size', type=int, default=8)
    ap.add_argument('--height', type=int, default=512)
    ap.add_argument('--width', type=int, default=384)
    ap.add_argument('--lr', type=float, default=1e-4)
    ap.add_argument('--weight-decay', type=float, default=0.0)
    ap.add_argument('--device', default='auto', help='auto | cpu | cuda[:N]')
    ap.add_argument('--encoder', default='resnet50', help='smp encoder (paper: resnet50)')
    ap.add_argument('--encoder-depth', type=int, default=5, help='3..5')
    ap.add_argument('--decoder-channels', default='256,128,64,32,16',
                    help='comma-separated, one per encoder level')
    ap.add_argument('--threshold', type=float, default=0.5, help='mask threshold for IoU')
    ap.add_argument('--cloth-type', choices=CLOTH_TYPES, default='upper',
                    help='which agnostic masks the dataset holds')
    ap.add_argument('--backgrounds', help='folder of background images for on-the-fly '
                    'background replacement')
    ap.add_argument('--background-prob', type=float, default=0.5)
    ap.add_argument('--workers', type=int, default=2, help='DataLoader worker processes')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--resume', action='store_true', help='continue from OUT/last.pt')
    return ap


def _tqdm(iterable: Iterable, desc: str, total: int) -> Iterable:
    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)


def main(args: list[str] | None = None) -> int:
    """Entry point of the train_segmentation console script."""
    opts = build_parser().parse_args(args)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    from vton_ros.pipeline.device import configure_torch, resolve_device
    from vton_ros.pipeline.segmentation import CheckpointError, SegmentationConfig
    from vton_ros.training.dataset import AugmentConfig
    from vton_ros.training.trainer import train, TrainConfig
    try:
        decoder = tuple(int(c) for c in opts.decoder_channels.split(','))
        model = SegmentationConfig(encoder=opts.encoder, encoder_depth=opts.encoder_depth,
                                   decoder_channels=decoder, height=opts.height,
                                   width=opts.width, threshold=opts.threshold,
                                   cloth_type=opts.cloth_type)
        config = TrainConfig(data=opts.data, out=opts.out, epochs=opts.epochs,
                             batch_size=opts.batch_size, lr=opts.lr,
                             weight_decay=opts.weight_decay, device=opts.device,
                             seed=opts.seed, num_workers=opts.workers,
                             backgrounds=opts.backgrounds, resume=opts.resume, model=model,
                             augment=AugmentConfig(background=opts.background_prob))
        configure_torch(resolve_device(opts.device))

        def report(rec: dict) -> None:
            tqdm.write(f"epoch {rec['epoch']}: train loss {rec['train_loss']:.4f}  "
                       f"val Dice loss {rec['val_dice_loss']:.4f}  val IoU {rec['val_iou']:.4f}"
                       f"{'  (best)' if rec['best'] else ''}")

        result = train(config, progress=_tqdm, on_epoch=report)
    except (ValueError, FileNotFoundError, CheckpointError) as err:
        print(f'train_segmentation: error: {err}', file=sys.stderr)
        return 2
    print(f'best val IoU {result.best_iou:.4f} at epoch {result.best_epoch}: '
          f'{result.best_path}; metrics: {result.metrics_path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
