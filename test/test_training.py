"""Segmentation training: dataset, augmentation, loop (IoU rises, best, resume), compose, CLIs."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from vton_ros.media.samples import portrait
from vton_ros.pipeline.masks import create_mask_generator
from vton_ros.pipeline.segmentation import CheckpointError, load_checkpoint, \
    SegmentationConfig, Segmenter
from vton_ros.tools import make_masks
from vton_ros.training.compose import BundledMatter, compose_dataset
from vton_ros.training.dataset import AgnosticMaskDataset, AugmentConfig, list_backgrounds, \
    list_samples, studio_matte
from vton_ros.training.losses import dice_loss, iou_per_image
from vton_ros.training.synthetic import make_synthetic_dataset
from vton_ros.training.trainer import evaluate, train, TrainConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = SegmentationConfig(encoder='resnet18', encoder_depth=4, decoder_channels=(32, 16, 8, 8),
                          height=64, width=48)
EPOCHS = 4


def _config(data: str, out: str, **kw) -> TrainConfig:
    base = {'epochs': EPOCHS, 'batch_size': 4, 'lr': 2e-3, 'device': 'cpu', 'num_workers': 0,
            'model': TINY, 'seed': 0}
    base.update(kw)
    return TrainConfig(data=data, out=out, **base)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('viton')
    make_synthetic_dataset(str(root / 'data'), n_train=24, n_test=8, height=96, width=72,
                           seed=1, backgrounds=str(root / 'bg'))
    return str(root / 'data'), str(root / 'bg')


@pytest.fixture(scope='module')
def run(data, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('run') / 'seg')
    return train(_config(data[0], out, backgrounds=data[1]))


def test_dataset_layout_and_errors(data, tmp_path):
    root, bgs = data
    samples = list_samples(root, 'train')
    assert len(samples) == 24 and samples[0].name == '00000_00'
    assert samples[0].mask_path.endswith(os.path.join('agnostic-mask', '00000_00_mask.png'))
    with pytest.raises(ValueError, match='agnostic-mask'):
        list_samples(str(tmp_path), 'train')
    with pytest.raises(ValueError, match='split'):
        list_samples(root, 'val')
    broken = tmp_path / 'broken'
    shutil.copytree(root, broken)
    os.makedirs(broken / 'test' / 'nothing_here')
    os.remove(broken / 'test' / 'agnostic-mask' / '00003_00_mask.png')
    with pytest.raises(ValueError, match='no mask'):
        list_samples(str(broken), 'test')
    assert len(list_backgrounds(bgs)) == 6
    with pytest.raises(ValueError, match='no background'):
        list_backgrounds(str(tmp_path / 'broken' / 'test' / 'nothing_here'))


def test_augmentation_is_seeded_and_changes_background(data):
    root, bgs = data
    plain = AgnosticMaskDataset(root, 'train', 64, 48)
    aug = AgnosticMaskDataset(root, 'train', 64, 48, AugmentConfig(background=1.0, flip=0.0),
                              list_backgrounds(bgs), seed=3)
    rgb0, mask0 = plain.load(0)
    rgb1, mask1 = aug.load(0)
    rgb2, _ = aug.load(0)
    assert rgb0.shape == (64, 48, 3) and mask0.shape == (64, 48)
    assert np.array_equal(mask0, mask1)  # no flip: the mask is untouched
    assert np.array_equal(rgb1, rgb2)    # same (seed, epoch, index) -> same draw
    corner = (slice(0, 6), slice(0, 6))
    assert np.abs(rgb1[corner].astype(int) - rgb0[corner].astype(int)).mean() > 10
    aug.set_epoch(1)
    assert not np.array_equal(aug.load(0)[0], rgb1)
    image, mask = aug[0]
    assert image.shape == (3, 64, 48) and image.dtype == torch.float32
    assert mask.shape == (1, 64, 48) and set(mask.unique().tolist()) <= {0.0, 1.0}


def test_studio_matte_finds_drawn_person(data):
    root, _ = data
    sample = list_samples(root, 'test')[0]
    rgb = cv2.cvtColor(cv2.imread(sample.image_path), cv2.COLOR_BGR2RGB)
    mask = cv2.imread(sample.mask_path, cv2.IMREAD_GRAYSCALE) > 127
    matte = studio_matte(rgb)
    assert matte[:3, :3].max() < 0.1
    garment = cv2.erode(mask.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    assert matte[garment].mean() > 0.9


def test_losses():
    target = torch.zeros(2, 1, 8, 8)
    target[:, :, 2:6, 2:6] = 1
    perfect = (target * 2 - 1) * 20
    assert float(dice_loss(perfect, target)) < 0.01
    assert float(dice_loss(-perfect, target)) > 0.9
    assert torch.allclose(iou_per_image(perfect, target), torch.ones(2))
    half = perfect.clone()
    half[:, :, 2:4] = -20
    assert torch.allclose(iou_per_image(half, target), torch.full((2,), 0.5))
    assert torch.allclose(iou_per_image(-20 * torch.ones(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)),
                          torch.ones(1))
    with pytest.raises(ValueError, match='same shape'):
        dice_loss(perfect, target[:1])


@pytest.mark.slow
def test_training_improves_iou_and_best_is_kept(run):
    ious = [r['val_iou'] for r in run.history]
    assert [r['epoch'] for r in run.history] == list(range(1, EPOCHS + 1))
    assert max(ious[1:]) > ious[0] + 0.15, ious
    assert max(ious) > 0.55, ious
    assert run.history[-1]['train_loss'] < run.history[0]['train_loss']
    with open(run.metrics_path, encoding='utf-8') as f:
        metrics = json.load(f)
    assert [e['val_iou'] for e in metrics['epochs']] == ious
    assert {'train_loss', 'val_dice_loss', 'val_iou'} <= set(metrics['epochs'][0])
    best_epoch = int(np.argmax(ious)) + 1
    assert metrics['best_epoch'] == best_epoch == run.best_epoch
    best = load_checkpoint(run.best_path)
    assert best.metadata['epoch'] == best_epoch and best.training is None
    assert best.config == TINY
    last = load_checkpoint(run.last_path)
    assert last.metadata['epoch'] == EPOCHS and last.training['epoch'] == EPOCHS


@pytest.mark.slow
def test_best_checkpoint_restores_its_iou(run, data):
    seg = Segmenter.from_pretrained(run.best_path, device='cpu', precision='fp32')
    val = AgnosticMaskDataset(data[0], 'test', TINY.height, TINY.width)
    _, iou = evaluate(seg.model, val, 4, torch.device('cpu'), TINY.threshold)
    assert iou == pytest.approx(run.best_iou, abs=1e-5)
    # the generator interface uses the same model at the photo's own size
    sample = list_samples(data[0], 'test')[0]
    rgb = cv2.cvtColor(cv2.imread(sample.image_path), cv2.COLOR_BGR2RGB)
    truth = cv2.imread(sample.mask_path, cv2.IMREAD_GRAYSCALE) > 127
    with create_mask_generator('unet', checkpoint=run.best_path, device='cpu') as gen:
        res = gen(rgb)
    pred = res.mask > 0
    assert res.mask.shape == truth.shape and res.person_found
    assert (pred & truth).sum() / (pred | truth).sum() > 0.4


@pytest.mark.slow
def test_resume_matches_uninterrupted_run(run, data, tmp_path):
    out = str(tmp_path / 'seg')
    first = train(_config(data[0], out, backgrounds=data[1], epochs=2))
    assert len(first.history) == 2
    with pytest.raises(ValueError, match='--resume'):
        train(_config(data[0], out, backgrounds=data[1]))
    with pytest.raises(CheckpointError, match='config mismatch'):
        train(_config(data[0], out, resume=True,
                      model=SegmentationConfig(encoder='resnet34', encoder_depth=4,
                                               decoder_channels=(32, 16, 8, 8),
                                               height=64, width=48)))
    resumed = train(_config(data[0], out, backgrounds=data[1], resume=True))
    assert [r['epoch'] for r in resumed.history] == list(range(1, EPOCHS + 1))
    for a, b in zip(resumed.history, run.history):
        assert a['val_iou'] == pytest.approx(b['val_iou'], abs=0.02)
        assert a['train_loss'] == pytest.approx(b['train_loss'], rel=0.02)


def _portrait_dataset(root: str) -> None:
    for split in ('train', 'test'):
        os.makedirs(os.path.join(root, split, 'image'))
        os.makedirs(os.path.join(root, split, 'agnostic-mask'))
        for name in ('astronaut', 'grace_hopper'):
            rgb = portrait(name)
            mask = np.zeros(rgb.shape[:2], np.uint8)
            mask[rgb.shape[0] // 2:] = 255
            cv2.imwrite(os.path.join(root, split, 'image', f'{name}.jpg'),
                        cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            cv2.imwrite(os.path.join(root, split, 'agnostic-mask', f'{name}_mask.png'), mask)


def test_compose_backgrounds_keeps_person_and_is_deterministic(data, tmp_path):
    src = str(tmp_path / 'src')
    _portrait_dataset(src)
    matter = BundledMatter()
    try:
        counts = compose_dataset(src, data[1], str(tmp_path / 'a'), matter, seed=5,
                                 splits=('test',))
        compose_dataset(src, data[1], str(tmp_path / 'b'), matter, seed=5, splits=('test',))
        compose_dataset(src, data[1], str(tmp_path / 'c'), matter, seed=6, splits=('test',))
    finally:
        matter.close()
    assert counts == {'test': 2}
    a = cv2.imread(str(tmp_path / 'a' / 'test' / 'image' / 'astronaut.jpg'))
    b = cv2.imread(str(tmp_path / 'b' / 'test' / 'image' / 'astronaut.jpg'))
    c = cv2.imread(str(tmp_path / 'c' / 'test' / 'image' / 'astronaut.jpg'))
    orig = cv2.imread(os.path.join(src, 'test', 'image', 'astronaut.jpg'))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    face = (slice(90, 160), slice(190, 260))  # the astronaut's face: person, kept
    assert np.abs(a[face].astype(int) - orig[face].astype(int)).mean() < 8
    corner = (slice(0, 40), slice(330, 370))  # grey studio wall above the shuttle: replaced
    assert np.abs(a[corner].astype(int) - orig[corner].astype(int)).mean() > 20
    for name in ('astronaut', 'grace_hopper'):
        assert np.array_equal(
            cv2.imread(os.path.join(src, 'test', 'agnostic-mask', f'{name}_mask.png')),
            cv2.imread(str(tmp_path / 'a' / 'test' / 'agnostic-mask' / f'{name}_mask.png')))
    matte = cv2.imread(str(tmp_path / 'a' / 'test' / 'person-mask' / 'astronaut.png'), 0)
    assert matte.shape == (512, 512) and matte[face].mean() > 200
    assert list_samples(str(tmp_path / 'a'), 'test')[0].person_path is not None


def _run_cli(module: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, '-m', module, *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=600)


@pytest.mark.slow
def test_cli_train_resume_then_make_masks(data, tmp_path):
    root, bgs = data
    out = str(tmp_path / 'cli')
    common = ['--data', root, '--out', out, '--batch-size', '4', '--height', '64',
              '--width', '48', '--lr', '2e-3', '--device', 'cpu', '--encoder', 'resnet18',
              '--encoder-depth', '4', '--decoder-channels', '32,16,8,8', '--workers', '0',
              '--backgrounds', bgs]
    proc = _run_cli('vton_ros.tools.train_segmentation', *common, '--epochs', '1')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'best val IoU' in proc.stdout
    proc = _run_cli('vton_ros.tools.train_segmentation', *common, '--epochs', '2', '--resume')
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(os.path.join(out, 'metrics.json'), encoding='utf-8') as f:
        assert [e['epoch'] for e in json.load(f)['epochs']] == [1, 2]
    photo = tmp_path / 'odd.png'
    rgb = cv2.resize(cv2.imread(list_samples(root, 'test')[0].image_path), (517, 333))
    cv2.imwrite(str(photo), rgb)
    # make_masks runs as a subprocess in test_masks; in-process here saves a torch start-up
    assert make_masks.main(['--backend', 'unet', '--checkpoint', os.path.join(out, 'best.pt'),
                            '--input', str(photo), '--out', str(tmp_path / 'masks'),
                            '--device', 'cpu']) == 0
    mask = cv2.imread(str(tmp_path / 'masks' / 'odd_mask.png'), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (333, 517) and mask.dtype == np.uint8
    assert (tmp_path / 'masks' / 'odd_overlay.png').is_file()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec('segment_anything') is not None,
                    reason='checks the fallback when segment_anything is not installed')
def test_cli_compose(data, tmp_path):
    src = str(tmp_path / 'src')
    _portrait_dataset(src)
    out = str(tmp_path / 'composed')
    proc = _run_cli('vton_ros.tools.compose_backgrounds', '--data', src, '--backgrounds',
                    data[1], '--out', out, '--seed', '2', '--sam-checkpoint',
                    str(tmp_path / 'no_such_sam.pth'))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'falling back to the bundled person segmenter' in proc.stderr
    with open(os.path.join(out, 'compose.json'), encoding='utf-8') as f:
        info = json.load(f)
    assert info['counts'] == {'train': 2, 'test': 2} and info['seed'] == 2
    assert info['matter'] == 'mediapipe-selfie-segmentation'
    assert len(list_samples(out, 'train')) == 2
