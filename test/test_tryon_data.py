"""Synthetic paired try-on data, the try-on measures and the demo trainer's plumbing."""

import dataclasses
import os

import cv2
from helpers import drawn_people
import numpy as np
import pytest
from vton_ros.pipeline.attention_sets import (AttentionSets, possible_versions,
                                              resolve_attn_version)
from vton_ros.pipeline.preprocess import blur_mask
from vton_ros.training import tryon_data, tryon_eval
from vton_ros.training.dataset import list_samples

RED, WHITE, GREEN = (200, 30, 40), (245, 245, 245), (30, 160, 60)


@pytest.mark.parametrize('kind', tryon_data.PATTERNS)
def test_patterns_use_the_given_colours(kind):
    img = tryon_data.draw_pattern(kind, 64, 48, (RED, WHITE), 16)
    assert img.shape == (64, 48, 3) and img.dtype == np.uint8
    assert (img == RED).all(axis=2).any()
    if kind not in ('solid', 'gradient'):
        assert (img == WHITE).all(axis=2).any()


def test_stripes_have_the_given_period():
    img = tryon_data.draw_pattern('stripes', 128, 96, (RED, WHITE), 24)
    mask = np.full((128, 96), 255, np.uint8)
    period, share = tryon_eval.dominant_period(tryon_eval.row_profile(img, mask))
    assert abs(period - 24) < 1.5 and share > 0.3
    vertical = tryon_data.draw_pattern('stripes', 128, 96, (RED, WHITE), 24, vertical=True)
    assert (vertical == vertical[:1]).all()  # constant along the height


def test_dress_repaints_only_the_body_inside_the_mask():
    person = np.full((40, 30, 3), 100, np.uint8)
    person[:, 15:] = 150
    mask = np.zeros((40, 30), np.uint8)
    mask[10:30, 5:25] = 255
    matte = np.zeros((40, 30), np.float32)
    matte[:, 10:] = 1.0
    pattern = np.zeros_like(person)
    pattern[:] = RED
    out = tryon_data.dress(person, mask, matte, pattern)
    outside = (mask < 128) | (matte == 0)
    assert np.array_equal(out[outside], person[outside])
    inside = out[12:28, 12:24]
    assert (inside[..., 0] > 2 * inside[..., 1]).all()  # red, shaded
    assert out[20, 20, 0] > out[20, 12, 0]  # the brighter half of the person stays brighter


def test_pairs_are_reproducible_and_dress_the_person():
    people = drawn_people()
    first = tryon_data.make_pair(people, 96, 72, np.random.default_rng([3, 0, 7]))
    again = tryon_data.make_pair(people, 96, 72, np.random.default_rng([3, 0, 7]))
    other = tryon_data.make_pair(people, 96, 72, np.random.default_rng([3, 0, 8]))
    for a, b in zip((first.target, first.garment, first.mask),
                    (again.target, again.garment, again.mask)):
        assert np.array_equal(a, b)
    assert not np.array_equal(first.garment, other.garment)
    assert first.target.shape == first.garment.shape == (96, 72, 3)
    assert set(np.unique(first.mask)) <= {0, 255} and (first.mask == 255).any()
    white = (first.garment >= 250).all(axis=2)
    assert white.mean() > 0.2 and not white.all()  # a garment on a white flat-lay ground


def test_dataset_layout_is_read_by_the_segmentation_reader(tmp_path):
    counts = tryon_data.make_tryon_dataset(str(tmp_path), 6, 2, 64, 48, seed=1,
                                           people=drawn_people())
    assert counts == {'train': 6, 'test': 2}
    assert len(list_samples(str(tmp_path), 'train')) == 6
    for folder in ('image', 'cloth', 'agnostic-mask', 'person-mask'):
        assert len(os.listdir(tmp_path / 'test' / folder)) == 2
    pairs = (tmp_path / 'train_pairs.txt').read_text().splitlines()
    assert pairs[0] == '00000_00.jpg 00000_00.jpg' and len(pairs) == 6
    data = tryon_data.load_pairs(str(tmp_path), 'train', 64, 48)
    assert data['target'].shape == (6, 64, 48, 3) and data['mask'].shape == (6, 64, 48)
    again = tmp_path / 'again'
    tryon_data.make_tryon_dataset(str(again), 6, 2, 64, 48, seed=1, people=drawn_people())
    a = cv2.imread(str(tmp_path / 'train' / 'cloth' / '00003_00.jpg'))
    b = cv2.imread(str(again / 'train' / 'cloth' / '00003_00.jpg'))
    assert np.array_equal(a, b)


def test_measures_tell_colours_and_patterns_apart():
    mask = np.zeros((128, 96), np.uint8)
    mask[40:120, 10:86] = 255
    stripes = tryon_data.draw_pattern('stripes', 128, 96, (RED, WHITE), 24)
    dots = tryon_data.draw_pattern('dots', 128, 96, (GREEN, WHITE), 24)
    assert tryon_eval.hue_share(stripes, mask, RED) == pytest.approx(0.5, abs=0.1)
    assert tryon_eval.hue_share(dots, mask, RED) == 0.0
    assert 0.1 < tryon_eval.hue_share(dots, mask, GREEN) < 0.4
    shaded = (stripes * 0.6).astype(np.uint8)  # darker, same hues
    assert tryon_eval.hue_share(shaded, mask, RED) == tryon_eval.hue_share(stripes, mask, RED)
    flat = np.full((128, 96, 3), 120, np.uint8)
    assert tryon_eval.dominant_period(tryon_eval.row_profile(flat, mask))[1] == 0.0
    with pytest.raises(ValueError, match='empty'):
        tryon_eval.region(flat, np.zeros((128, 96), np.uint8))


@pytest.mark.parametrize('setting, cloth, size, expected', [
    ('auto', 'upper', (512, 384), 'vitonhd'),
    ('auto', 'lower', (512, 384), 'dresscode'),
    ('auto', 'overall', (256, 192), 'dresscode'),
    ('auto', 'upper', (1024, 768), 'mix'),
    ('auto', 'lower', (1024, 768), 'mix'),
    ('auto', 'upper', (768, 576), 'mix'),
    ('dresscode', 'upper', (1024, 768), 'dresscode'),
    ('mix', 'lower', (512, 384), 'mix'),
])
def test_auto_attention_version(setting, cloth, size, expected):
    assert resolve_attn_version(setting, cloth, *size) == expected


def test_possible_versions_cover_every_cloth_type():
    assert possible_versions('auto', 512, 384) == ('dresscode', 'vitonhd')
    assert possible_versions('auto', 1024, 768) == ('mix',)
    assert possible_versions('vitonhd', 1024, 768) == ('vitonhd',)


def test_auto_attention_version_rejects_unknown_names():
    with pytest.raises(ValueError, match='unknown attn_version'):
        resolve_attn_version('hd', 'upper', 512, 384)
    with pytest.raises(ValueError, match='unknown cloth_type'):
        resolve_attn_version('auto', 'hat', 512, 384)


def test_attention_sets_load_once_and_swap(tmp_path):
    from safetensors.torch import load_file
    from vton_ros.pipeline import attention, weights
    from vton_ros.pipeline.catvton import CatVTONPipeline
    from vton_ros.tools.make_test_weights import write_test_weights

    paths = write_test_weights(str(tmp_path))
    pipe = CatVTONPipeline.from_pretrained(**paths, attn_version='vitonhd', device='cpu',
                                           dtype='fp32')
    modules = attention.self_attention_modules(pipe.unet)

    def file_state(version):
        path = tmp_path / 'CatVTON' / weights.ATTN_VERSIONS[version] / 'attention'
        return attention.renumber_attention_state(load_file(path / 'model.safetensors'))

    sets = AttentionSets(pipe.unet, paths['attn_ckpt'], 'vitonhd')
    for version in ('dresscode', 'vitonhd', 'mix', 'dresscode'):
        assert sets.use(version) == version == sets.current
        state = modules.state_dict()
        assert all(np.array_equal(state[k].numpy(), v.numpy())
                   for k, v in file_state(version).items())
    assert sets.loaded == ('vitonhd', 'dresscode', 'mix')
    missing = AttentionSets(pipe.unet, str(tmp_path / 'nowhere'), 'dresscode')
    with pytest.raises(weights.ModelNotFoundError):
        missing.use('vitonhd')
    assert missing.current == 'dresscode'


def test_blur_mask_rounds_corners_and_zero_is_off():
    mask = np.zeros((64, 48), np.uint8)
    mask[16:48, 12:36] = 255
    assert np.array_equal(blur_mask(mask, 0), mask)
    blurred = blur_mask(mask, 4)
    binary = blurred >= 128
    assert not binary[16, 12] and binary[32, 24]  # corner off, centre on
    assert binary.sum() < (mask == 255).sum()
    with pytest.raises(ValueError):
        blur_mask(mask, -1)


@pytest.mark.slow
def test_demo_trainer_resumes_exactly_and_exports_the_published_layouts(tmp_path):
    import torch
    from vton_ros.pipeline.catvton import CatVTONPipeline
    from vton_ros.training.tryon_trainer import DemoTrainConfig, DemoTrainer

    data = tmp_path / 'data'
    tryon_data.make_tryon_dataset(str(data), 4, 1, 64, 48, seed=2, people=drawn_people())

    def config(work: str, vae_steps: int, unet_steps: int) -> DemoTrainConfig:
        return DemoTrainConfig(str(data), str(tmp_path / work), 64, 48, vae_steps=vae_steps,
                               vae_batch=2, unet_steps=unet_steps, unet_batch=2, warmup=1,
                               checkpoint_every=1)

    straight = DemoTrainer(config('a', 2, 2))
    straight.train()
    first = DemoTrainer(config('b', 1, 0))
    first.train()
    resumed = DemoTrainer(config('b', 2, 2))
    assert resumed.load_checkpoint() and resumed.state['vae_step'] == 1
    resumed.train()
    assert resumed.state['vae_loss'] == straight.state['vae_loss']
    assert resumed.state['unet_loss'] == straight.state['unet_loss']
    for key, value in straight.ema.items():
        assert torch.equal(value, resumed.ema[key]), key
    with pytest.raises(ValueError, match='other settings'):
        DemoTrainer(DemoTrainConfig(str(data), str(tmp_path / 'b'), 64, 48, seed=1,
                                    vae_batch=2, unet_batch=2, warmup=1)).load_checkpoint()

    paths = resumed.export_model(str(tmp_path / 'model'))
    assert sorted(os.listdir(tmp_path / 'model' / 'catvton')) == [
        'dresscode-16k-512', 'mix-48k-1024', 'vitonhd-16k-512']
    pipe = CatVTONPipeline.from_pretrained(**paths, attn_version='dresscode', device='cpu',
                                           dtype='fp32')
    assert pipe.vae.config.scaling_factor == pytest.approx(resumed.state['scaling_factor'])
    assert not pipe.random_weights
    sample = tryon_data.load_pairs(str(data), 'test', 64, 48)
    out = pipe(sample['target'][0], sample['garment'][0], sample['mask'][0], height=64,
               width=48, num_inference_steps=2, seed=0)
    assert out.image.shape == (64, 48, 3)


@pytest.mark.slow
def test_try_on_blurs_the_mask_picks_attention_and_keeps_the_person(tmp_path):
    from vton_ros.goals import tryon_job as tryon_core
    from vton_ros.goals.admission import GoalError, Request
    from vton_ros.settings.views import CatVTONCall
    from vton_ros.pipeline.catvton import CatVTONPipeline
    from vton_ros.tools.make_test_weights import write_test_weights

    paths = write_test_weights(str(tmp_path))
    pipe = CatVTONPipeline.from_pretrained(**paths, attn_version='vitonhd', device='cpu',
                                           dtype='fp32')
    person = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    mask = np.zeros((96, 96), np.uint8)
    mask[30:80, 25:70] = 255

    def run(cloth_type='upper', attn_version='auto', mask_blur=0.0):
        call = dataclasses.replace(CatVTONCall.defaults(), height=64, width=48,
                                   num_inference_steps=2, guidance_scale=2.5, seed=1,
                                   repaint=True, mask_blur=mask_blur)
        request = Request(person, 'image', cloth_type, person, mask, call)
        timings = dict.fromkeys(tryon_core.STAGES, 0.0)
        return tryon_core.try_on(pipe, request, person, mask, timings, lambda *a: None,
                                 attn_version=attn_version)

    image, binary, notes = run()
    assert 'attention vitonhd' in notes and pipe.attention_sets.current == 'vitonhd'
    assert np.array_equal(image[binary == 0], person[binary == 0])  # repaint: untouched
    assert np.array_equal(binary, mask)
    _, blurred, notes = run('lower', mask_blur=4.0)
    assert 'attention dresscode' in notes and pipe.attention_sets.current == 'dresscode'
    assert blurred[30, 25] == 0 and blurred[55, 47] == 255  # corner rounded off
    with pytest.raises(GoalError, match='attention weights'):
        run(attn_version='hd')
