"""
Training loop of the agnostic-mask U-Net: Dice loss, IoU on the test split, resumable.

Writes into ``out``:

- ``last.pt``: the latest epoch, with optimizer and progress state (``--resume`` reads it);
- ``best.pt``: the epoch with the highest validation IoU so far (weights and config only);
- ``metrics.json``: per-epoch ``train_loss``, ``val_dice_loss``, ``val_iou`` and the best.

Both checkpoints load with :meth:`vton_ros.pipeline.segmentation.Segmenter.from_pretrained`.
Each epoch's shuffling and augmentation are seeded from (seed, epoch), so a resumed run
follows the same path as an uninterrupted one.
"""

from dataclasses import dataclass, field, replace
import json
import logging
import os
import time
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch.utils.data import DataLoader

from vton_ros.pipeline.device import resolve_device
from vton_ros.pipeline.segmentation import (build_model, load_checkpoint, model_from_checkpoint,
                                            save_checkpoint, SegmentationConfig)
from vton_ros.training.dataset import AgnosticMaskDataset, AugmentConfig, list_backgrounds
from vton_ros.training.losses import dice_loss, iou_per_image

_LOG = logging.getLogger(__name__)

BEST, LAST, METRICS = 'best.pt', 'last.pt', 'metrics.json'
# progress(iterable, description, total) -> iterable; the CLI passes a tqdm wrapper
Progress = Callable[[Iterable, str, int], Iterable]


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs (paths, optimisation, model, augmentation)."""

    data: str
    out: str
    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    device: str = 'auto'
    seed: int = 0
    num_workers: int = 2
    backgrounds: str | None = None
    resume: bool = False
    model: SegmentationConfig = field(default_factory=SegmentationConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        """Validate (ValueError)."""
        if self.epochs < 1 or self.batch_size < 1 or self.num_workers < 0:
            raise ValueError('epochs and batch_size must be >= 1 and num_workers >= 0, got '
                             f'{self.epochs}, {self.batch_size}, {self.num_workers}')
        if not self.lr > 0:
            raise ValueError(f'lr must be > 0, got {self.lr}')


@dataclass(frozen=True)
class TrainResult:
    """Outcome: per-epoch history (dicts), best epoch and IoU, checkpoint paths."""

    history: list[dict[str, Any]]
    best_epoch: int
    best_iou: float
    best_path: str
    last_path: str
    metrics_path: str


def _model_expect(cfg: SegmentationConfig) -> dict[str, Any]:
    return {k: v for k, v in cfg.to_dict().items() if k != 'threshold'}


def train(config: TrainConfig, progress: Progress | None = None,
          on_epoch: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """
    Train (or resume) the U-Net described by ``config``; see the module docstring.

    progress: optional wrapper for progress bars; on_epoch: called with each epoch's record.
    Raises ValueError for a bad dataset, an ``out`` that already holds a run without
    ``resume``, or a resume whose checkpoint has a different model config. The seeding it
    does stays local: the caller's torch RNG state is restored afterwards.
    """
    with torch.random.fork_rng(devices=[]):
        return _train(config, progress, on_epoch)


def _train(config: TrainConfig, progress: Progress | None,
           on_epoch: Callable[[dict[str, Any]], None] | None) -> TrainResult:
    device = resolve_device(config.device)
    mcfg = config.model
    last_path = os.path.join(config.out, LAST)
    best_path = os.path.join(config.out, BEST)
    metrics_path = os.path.join(config.out, METRICS)
    if not config.resume and os.path.exists(last_path):
        raise ValueError(f'{config.out} already holds a training run ({last_path}); pass '
                         '--resume to continue it or choose another --out')
    backgrounds = list_backgrounds(config.backgrounds) if config.backgrounds else None
    train_set = AgnosticMaskDataset(config.data, 'train', mcfg.height, mcfg.width,
                                    config.augment, backgrounds, config.seed)
    val_set = AgnosticMaskDataset(config.data, 'test', mcfg.height, mcfg.width)

    history: list[dict[str, Any]] = []
    best_iou, best_epoch, start = -1.0, 0, 1
    if config.resume:
        ckpt = load_checkpoint(last_path, expect=_model_expect(mcfg))
        if not ckpt.training:
            raise ValueError(f'{last_path} has no training state; it cannot be resumed')
        model = model_from_checkpoint(ckpt, last_path)
        mcfg = replace(mcfg, threshold=ckpt.config.threshold)
        state = ckpt.training
        history = list(state['history'])
        best_iou, best_epoch = float(state['best_iou']), int(state['best_epoch'])
        start = int(state['epoch']) + 1
        _LOG.info('resuming %s at epoch %d (best val IoU %.4f at epoch %d)', last_path, start,
                  best_iou, best_epoch)
    else:
        torch.manual_seed(config.seed)
        model = build_model(mcfg)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    if config.resume:
        optimizer.load_state_dict(state['optimizer'])
        for group in optimizer.param_groups:
            group['lr'] = config.lr
    os.makedirs(config.out, exist_ok=True)
    wrap = progress or (lambda it, desc, total: it)
    meta = {'data': os.path.abspath(config.data), 'train_samples': len(train_set),
            'val_samples': len(val_set), 'backgrounds': config.backgrounds,
            'lr': config.lr, 'batch_size': config.batch_size, 'seed': config.seed}

    for epoch in range(start, config.epochs + 1):
        t0 = time.monotonic()
        torch.manual_seed(config.seed * 100003 + epoch)
        train_set.set_epoch(epoch)
        gen = torch.Generator().manual_seed(config.seed * 100003 + epoch)
        loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True,
                            generator=gen, num_workers=config.num_workers, drop_last=False)
        model.train()
        total, count = 0.0, 0
        for images, masks in wrap(loader, f'epoch {epoch}/{config.epochs} train', len(loader)):
            images, masks = images.to(device), masks.to(device)
            loss = dice_loss(model(images), masks)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * images.shape[0]
            count += images.shape[0]
        val_loss, val_iou = evaluate(model, val_set, config.batch_size, device, mcfg.threshold,
                                     config.num_workers, wrap, f'epoch {epoch} val')
        record = {'epoch': epoch, 'train_loss': total / max(count, 1),
                  'val_dice_loss': val_loss, 'val_iou': val_iou,
                  'seconds': round(time.monotonic() - t0, 3)}
        improved = val_iou > best_iou
        if improved:
            best_iou, best_epoch = val_iou, epoch
            save_checkpoint(best_path, model, mcfg, dict(meta, **record))
        record['best'] = improved
        history.append(record)
        training = {'epoch': epoch, 'optimizer': optimizer.state_dict(), 'history': history,
                    'best_iou': best_iou, 'best_epoch': best_epoch}
        save_checkpoint(last_path, model, mcfg, dict(meta, **record), training)
        _write_metrics(metrics_path, config, mcfg, history, best_epoch, best_iou)
        _LOG.info('epoch %d: train loss %.4f, val Dice loss %.4f, val IoU %.4f%s', epoch,
                  record['train_loss'], val_loss, val_iou, ' (best)' if improved else '')
        if on_epoch is not None:
            on_epoch(record)
    if start > config.epochs:
        _LOG.warning('%s already holds %d epochs (>= --epochs %d): nothing trained; raise '
                     '--epochs to continue', config.out, start - 1, config.epochs)
    return TrainResult(history, best_epoch, best_iou, best_path, last_path, metrics_path)


@torch.inference_mode()
def evaluate(model: torch.nn.Module, dataset: AgnosticMaskDataset, batch_size: int,
             device: torch.device, threshold: float = 0.5, num_workers: int = 0,
             progress: Progress | None = None, desc: str = 'val') -> tuple[float, float]:
    """Mean per-image Dice loss and IoU of ``model`` over ``dataset`` (eval mode)."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    wrap = progress or (lambda it, d, total: it)
    losses, ious = [], []
    for images, masks in wrap(loader, desc, len(loader)):
        images, masks = images.to(device), masks.to(device)
        logits = model(images)
        losses.append(dice_loss(logits, masks, reduce=False).cpu())
        ious.append(iou_per_image(logits, masks, threshold).cpu())
    return float(torch.cat(losses).mean()), float(torch.cat(ious).mean())


def _write_metrics(path: str, config: TrainConfig, mcfg: SegmentationConfig,
                   history: list[dict[str, Any]], best_epoch: int, best_iou: float) -> None:
    payload = {'model': mcfg.to_dict(), 'data': os.path.abspath(config.data),
               'epochs': history, 'best_epoch': best_epoch, 'best_val_iou': best_iou}
    tmp = f'{path}.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(payload, f, indent=2, default=_json_default)
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f'not JSON serialisable: {type(value).__name__}')
