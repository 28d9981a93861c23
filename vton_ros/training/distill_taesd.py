"""
Distil a TAESD (diffusers ``AutoencoderTiny``) from a trained ``AutoencoderKL``.

The pipeline's tiny options (``catvton.encoder/decoder/preview_decoder: tiny``) use the
TAESD in the pipeline's *scaled* latent space: ``encode(image)`` must give the teacher's
posterior mean times its ``scaling_factor`` and ``decode(latents)`` the image, both in
[-1, 1] (:class:`vton_ros.pipeline.forwards.TorchModels`). So the student's encoder learns
the teacher's scaled posterior mean (MSE) and its decoder learns to turn the teacher's
scaled latents into the image (L1 + MSE against the teacher's decoded image, the real image,
or both: :attr:`DistillConfig.target`). The student's ``scaling_factor`` is 1.0.

Data: the targets, garments and masked persons (as the pipeline encodes them) of a
``make_tryon_data`` folder, random half-size crops, randomly flipped. Every batch is drawn
from (seed, step) and the student is initialised from the seed: a run is reproducible.
"""

from dataclasses import dataclass
import math
from typing import Callable, Iterable

from diffusers import AutoencoderKL, AutoencoderTiny
import numpy as np
import torch
import torch.nn.functional as F

from vton_ros.training.tryon_data import load_pairs
from vton_ros.training.tryon_trainer import masked_images, to_tensor

Progress = Callable[[Iterable, str, int], Iterable]
TARGETS = ('teacher', 'image', 'both')


@dataclass(frozen=True)
class DistillConfig:
    """Settings of one distillation run (sizes in pixels)."""

    steps: int = 300
    batch: int = 8
    lr: float = 1e-3
    warmup: int = 50
    seed: int = 0
    channels: int = 32
    target: str = 'teacher'
    height: int = 128
    width: int = 96


def student_config(teacher: AutoencoderKL, channels: int) -> dict:
    """
    Return the student's AutoencoderTiny config.

    The teacher's latent channels and downsampling, ``channels`` wide, diffusers' default
    block counts and latent magnitude/shift, scaling factor 1.
    """
    levels = len(teacher.config.block_out_channels)
    return {'in_channels': 3, 'out_channels': 3, 'act_fn': 'relu', 'upsample_fn': 'nearest',
            'encoder_block_out_channels': [channels] * levels,
            'decoder_block_out_channels': [channels] * levels,
            'num_encoder_blocks': [1] + [3] * (levels - 1),
            'num_decoder_blocks': [3] * (levels - 1) + [1],
            'latent_channels': teacher.config.latent_channels, 'upsampling_scaling_factor': 2,
            'latent_magnitude': 3, 'latent_shift': 0.5, 'force_upcast': False,
            'scaling_factor': 1.0, 'shift_factor': 0.0}


def image_pool(root: str, split: str, height: int, width: int) -> np.ndarray:
    """
    Return the targets, garments and masked persons of a split, (3N, H, W, 3) uint8.

    As the pipeline sees them: person cover-resized, garment letterboxed, mask grey.
    """
    data = load_pairs(root, split, height, width)
    return np.concatenate([data['target'], data['garment'],
                           masked_images(data['target'], data['mask'])])


@torch.no_grad()
def teacher_outputs(teacher: AutoencoderKL,
                    images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the teacher's scaled posterior mean of ``images`` and its decoded image."""
    scale = teacher.config.scaling_factor
    latents = teacher.encode(images).latent_dist.mean * scale
    return latents, teacher.decode(latents / scale).sample


def psnr(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of [-1, 1] images, on the [0, 1] range."""
    err = ((images.clamp(-1, 1) - reference.clamp(-1, 1)) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / err.clamp_min(1e-10))


class TaesdDistiller:
    """Trains an AutoencoderTiny student against a frozen AutoencoderKL teacher."""

    def __init__(self, teacher: AutoencoderKL, pool: np.ndarray, config: DistillConfig) -> None:
        if config.target not in TARGETS:
            raise ValueError(f'target must be one of {TARGETS}, not {config.target!r}')
        if len(pool) == 0:
            raise ValueError('no training images')
        self.config = config
        self.teacher = teacher.eval().requires_grad_(False)
        self.pool = pool
        torch.manual_seed(config.seed)
        self.student = AutoencoderTiny(**student_config(teacher, config.channels))
        self.opt = torch.optim.AdamW(self.student.parameters(), lr=config.lr,
                                     weight_decay=0.0)
        self.step_index = 0
        self.losses: list[tuple[float, float]] = []

    def batch(self, step: int) -> torch.Tensor:
        """Random half-size crops of pool images, half of them flipped, drawn from the step."""
        cfg = self.config
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        idx = torch.randint(len(self.pool), (cfg.batch,), generator=gen).numpy()
        flip = torch.rand(cfg.batch, generator=gen).numpy() < 0.5
        ch, cw = cfg.height // 2, cfg.width // 2
        height, width = self.pool.shape[1:3]
        top = torch.randint(height - ch + 1, (cfg.batch,), generator=gen).numpy()
        left = torch.randint(width - cw + 1, (cfg.batch,), generator=gen).numpy()
        crops = [self.pool[i, y:y + ch, x:x + cw] for i, y, x in zip(idx, top, left)]
        crops = [c[:, ::-1] if f else c for c, f in zip(crops, flip)]
        return to_tensor(np.ascontiguousarray(np.stack(crops)))

    def decoder_loss(self, decoded: torch.Tensor, teacher_image: torch.Tensor,
                     image: torch.Tensor) -> torch.Tensor:
        """L1 + MSE of the student's image against the configured target(s)."""
        targets = {'teacher': (teacher_image,), 'image': (image,),
                   'both': (teacher_image, image)}[self.config.target]
        return sum(F.l1_loss(decoded, t) + F.mse_loss(decoded, t) for t in targets) / len(
            targets)

    def step(self) -> tuple[float, float]:
        """One optimisation step of encoder and decoder; returns (latent MSE, image loss)."""
        cfg = self.config
        images = self.batch(self.step_index)
        latents, teacher_image = teacher_outputs(self.teacher, images)
        enc_loss = F.mse_loss(self.student.encode(images).latents, latents)
        dec_loss = self.decoder_loss(self.student.decode(latents).sample, teacher_image, images)
        step = self.step_index
        rate = (cfg.lr * (step + 1) / cfg.warmup if step < cfg.warmup else
                cfg.lr * (0.55 + 0.45 * math.cos(math.pi * (step - cfg.warmup)
                                                 / max(1, cfg.steps - cfg.warmup))))
        for group in self.opt.param_groups:
            group['lr'] = rate
        self.opt.zero_grad(set_to_none=True)
        (enc_loss + dec_loss).backward()
        torch.nn.utils.clip_grad_norm_(self.student.parameters(), 1.0)
        self.opt.step()
        self.step_index = step + 1
        self.losses.append((enc_loss.item(), dec_loss.item()))
        return self.losses[-1]

    def train(self, progress: Progress | None = None) -> None:
        """Run the remaining steps of the configured length."""
        self.student.train()
        remaining = range(self.step_index, self.config.steps)
        for _ in (remaining if progress is None else
                  progress(remaining, 'distil', self.config.steps)):
            self.step()
        self.student.eval()

    @torch.no_grad()
    def evaluate(self, images: np.ndarray, batch: int = 16) -> dict[str, float]:
        """
        Return held-out figures on (N, H, W, 3) uint8 images.

        Mean per-image PSNR of the student's decode of the teacher's latents against the
        teacher's decode and against the image, the teacher's own PSNR against the image,
        and the mean latent MSE of the student's encoder.
        """
        self.student.eval()
        sums = {'psnr_vs_teacher': 0.0, 'psnr_vs_image': 0.0, 'teacher_psnr_vs_image': 0.0,
                'latent_mse': 0.0}
        for start in range(0, len(images), batch):
            x = to_tensor(images[start:start + batch])
            latents, teacher_image = teacher_outputs(self.teacher, x)
            decoded = self.student.decode(latents).sample
            sums['psnr_vs_teacher'] += psnr(decoded, teacher_image).sum().item()
            sums['psnr_vs_image'] += psnr(decoded, x).sum().item()
            sums['teacher_psnr_vs_image'] += psnr(teacher_image, x).sum().item()
            err = (self.student.encode(x).latents - latents).pow(2).flatten(1).mean(1)
            sums['latent_mse'] += err.sum().item()
        return {k: round(v / len(images), 4) for k, v in sums.items()}

    def save(self, out_dir: str) -> None:
        """Write the student in the AutoencoderTiny layout (config.json + safetensors)."""
        self.student.save_pretrained(out_dir, safe_serialization=True)
