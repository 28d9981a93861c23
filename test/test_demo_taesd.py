"""
The demo TAESD: distillation (train_demo_taesd) and the shipped models/demo/taesd.

A short distillation from the tiny test VAE writes a folder that the pipeline loads and runs
with the tiny encoder and decoder; the same seed writes the same weights. The shipped TAESD
decodes the demo VAE's latents of images it never saw (drawn pairs at the demo's test seeds,
the bundled portraits and catalogue garments, as the pipeline sees them) within a measured
PSNR bound, and its encoder gives latents close to the VAE's; a random TAESD fails both.
"""

import json
from pathlib import Path

import cv2
from diffusers import AutoencoderKL, AutoencoderTiny
from helpers import drawn_people
import numpy as np
import pytest
import torch

from vton_ros.media import samples
from vton_ros.pipeline.catvton import CatVTONPipeline
from vton_ros.pipeline.preprocess import cover_resize, letterbox
from vton_ros.tools.train_demo_taesd import main
from vton_ros.training import tryon_data
from vton_ros.training.distill_taesd import psnr, student_config, teacher_outputs
from vton_ros.training.tryon_trainer import masked_images, to_tensor

DEMO = Path(__file__).resolve().parents[1] / 'models' / 'demo'
GARMENTS = Path(__file__).resolve().parents[1] / 'garments'
# the shipped TAESD on held_out_images(): 23.68 dB and 0.0328 (a random one: 3.1 dB, 1.07)
MIN_PSNR_VS_TEACHER = 22.0
MAX_LATENT_MSE = 0.05
pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.mark.slow
def test_distillation_writes_a_taesd_the_pipeline_runs(tiny, inputs, tmp_path, capsys):
    data = tmp_path / 'data'
    tryon_data.make_tryon_dataset(str(data), 4, 2, 64, 48, seed=3, people=drawn_people())
    outs = [tmp_path / 'taesd_a', tmp_path / 'taesd_b']
    for out in outs:
        assert main(['--data', str(data), '--vae', tiny['vae'], '--out', str(out),
                     '--steps', '3', '--batch', '2', '--height', '64', '--width', '48',
                     '--channels', '8']) == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.index('{'):printed.index('\n}') + 2])
    assert summary['held_out_images'] == 6 and summary['train_images'] == 12
    assert set(summary['held_out']) == {'psnr_vs_teacher', 'psnr_vs_image',
                                        'teacher_psnr_vs_image', 'latent_mse'}
    assert sorted(p.name for p in outs[0].iterdir()) == ['config.json',
                                                         'diffusion_pytorch_model.safetensors']
    weights = [(out / 'diffusion_pytorch_model.safetensors').read_bytes() for out in outs]
    assert weights[0] == weights[1]  # seeded
    config = json.loads((outs[0] / 'config.json').read_text())
    assert config['scaling_factor'] == 1.0 and config['latent_channels'] == 4

    pipe = CatVTONPipeline.from_pretrained(**dict(tiny, tiny_vae=str(outs[0])), device='cpu',
                                           dtype='fp32', decoder='tiny', encoder='tiny')
    assert pipe.tiny_vae.config.encoder_block_out_channels == [8, 8, 8, 8]
    result = pipe(*inputs, height=64, width=48, num_inference_steps=2)
    assert result.image.shape == (64, 48, 3) and not result.nan_recovered


def test_cli_rejects_missing_data(tiny, tmp_path, capsys):
    assert main(['--data', str(tmp_path), '--vae', tiny['vae'], '--out',
                 str(tmp_path / 'out')]) == 2
    assert 'make_tryon_data' in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


def held_out_images() -> np.ndarray:
    """
    Return unseen 128x96 inputs as the pipeline encodes them.

    Targets, garments and masked persons of drawn pairs at the demo's test seeds, the
    portraits and two catalogue garments.
    """
    images = []
    for i in range(4):
        pair = tryon_data.make_pair([], 128, 96, np.random.default_rng([0, 1, i]),
                                    portrait_share=0.0)
        images += [pair.target, pair.garment, masked_images(pair.target, pair.mask)]
    images += [cover_resize(samples.portrait(name), 128, 96)[0] for name in samples.PORTRAITS]
    for name in ('red_striped_shirt', 'green_dotted_shirt'):
        bgr = cv2.imread(str(GARMENTS / f'{name}.png'))
        images.append(letterbox(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), 128, 96))
    return np.stack(images)


@torch.no_grad()
def figures(student: AutoencoderTiny, teacher: AutoencoderKL,
            images: np.ndarray) -> tuple[float, float]:
    """Mean PSNR of the student's decode vs the teacher's, and the encoder's latent MSE."""
    x = to_tensor(images)
    latents, decoded = teacher_outputs(teacher, x)
    quality = psnr(student.decode(latents).sample, decoded).mean().item()
    return quality, (student.encode(x).latents - latents).pow(2).mean().item()


@pytest.mark.slow
def test_shipped_taesd_matches_the_demo_vae():
    teacher = AutoencoderKL.from_pretrained(DEMO / 'vae').eval()
    shipped = AutoencoderTiny.from_pretrained(DEMO / 'taesd').eval()
    assert shipped.config.scaling_factor == 1.0
    assert (DEMO / 'taesd' / 'diffusion_pytorch_model.safetensors').stat().st_size < 5e6
    images = held_out_images()
    quality, latent_mse = figures(shipped, teacher, images)
    print(f'shipped TAESD: PSNR vs VAE {quality:.2f} dB, latent MSE {latent_mse:.4f}')
    assert quality >= MIN_PSNR_VS_TEACHER and latent_mse <= MAX_LATENT_MSE
    torch.manual_seed(0)
    untrained = AutoencoderTiny(**student_config(teacher, 32)).eval()
    quality, latent_mse = figures(untrained, teacher, images)
    assert quality < MIN_PSNR_VS_TEACHER and latent_mse > MAX_LATENT_MSE
