"""
Train a tiny CatVTON from scratch on synthetic pairs (:mod:`vton_ros.training.tryon_data`).

Same architecture and code path as the real model, only smaller:

1. an 8x AutoencoderKL (4 levels, 4 latent channels) trained as a reconstruction
   autoencoder (L1 + MSE, tiny KL) on targets, garments and masked persons; its
   ``scaling_factor`` is set to 1 / std of the latents;
2. a 9-channel UNet2DConditionModel whose cross-attention is skipped exactly as at inference
   (:func:`vton_ros.pipeline.attention.install_catvton_processors`), trained with CatVTON's
   objective: noise-prediction MSE on [target | garment] latents stacked on height, with the
   mask (zeros for the garment half) and the [masked person | garment] latents as extra input
   channels; the garment half of the condition is zeroed for ``cfg_dropout`` of the
   examples (classifier-free guidance). High-noise timesteps are weighted up
   (:meth:`DemoTrainer.noise_weights`). EMA weights are exported.

:func:`export_model` writes the published layouts (``base/unet``, ``base/scheduler``,
``vae``, ``catvton/<version>/attention/model.safetensors`` numbered 0, 8, ..., like the
released files), which ``CatVTONPipeline.from_pretrained`` loads unchanged. Training is
resumable: a checkpoint holds the models, optimisers, EMA, step and losses, and every batch
is drawn from (seed, stage, step), so a resumed run continues identically.
"""

from dataclasses import asdict, dataclass
import json
import logging
import math
import os
from typing import Callable, Iterable

from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
import numpy as np
import torch
import torch.nn.functional as F

from vton_ros.pipeline import attention, weights
from vton_ros.pipeline.random_weights import sd15_scheduler_config, sd_vae_config
from vton_ros.training.tryon_data import load_pairs

_LOG = logging.getLogger(__name__)

Progress = Callable[[Iterable, str, int], Iterable]
CHECKPOINT = 'checkpoint.pt'
LATENTS = 'latents.pt'
RESUMABLE = ('vae_steps', 'unet_steps', 'checkpoint_every', 'noise_weight_cap')


@dataclass(frozen=True)
class DemoTrainConfig:
    """Settings of one training run (sizes in pixels, learning rates, step counts)."""

    data: str
    work_dir: str
    height: int = 128
    width: int = 96
    seed: int = 0
    vae_steps: int = 2500
    vae_batch: int = 16
    vae_lr: float = 5e-4
    vae_kl: float = 1e-6
    unet_steps: int = 6000
    unet_batch: int = 32
    unet_lr: float = 5e-4
    warmup: int = 100
    cfg_dropout: float = 0.1
    noise_weight_cap: float = 10.0
    ema_decay: float = 0.999
    checkpoint_every: int = 100


def demo_vae_config() -> dict:
    """Return the SD VAE config shrunk: 4 levels (8x), 4 latent channels, 32-64 wide."""
    return dict(sd_vae_config(), block_out_channels=[32, 64, 64, 64], layers_per_block=1,
                norm_num_groups=16, sample_size=128)


def demo_unet_config() -> dict:
    """Return a 9-channel UNet2DConditionModel config: 3 levels, attention in the lower 2."""
    return {
        'sample_size': 16,
        'in_channels': 9,
        'out_channels': 4,
        'down_block_types': ['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'],
        'up_block_types': ['CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'],
        'block_out_channels': [48, 96, 160],
        'layers_per_block': 1,
        'cross_attention_dim': 32,  # attn2 is skipped; this only sizes its unused weights
        'attention_head_dim': 4,
        'norm_num_groups': 16,
    }


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def masked_images(target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return the pipeline's masked person: mask >= 128 set to mid-grey (0 in [-1, 1])."""
    out = target.copy()
    out[mask >= 128] = 127
    return out


class DemoTrainer:
    """Both training stages, checkpointing and export; see the module docstring."""

    def __init__(self, config: DemoTrainConfig) -> None:
        self.config = config
        torch.manual_seed(config.seed)
        self.vae = AutoencoderKL(**demo_vae_config())
        self.unet = UNet2DConditionModel(**demo_unet_config())
        attention.install_catvton_processors(self.unet)
        self.ema = {k: v.detach().clone() for k, v in self.unet.state_dict().items()}
        self.vae_opt = torch.optim.AdamW(self.vae.parameters(), config.vae_lr, weight_decay=0.0)
        self.unet_opt = torch.optim.AdamW(self.unet.parameters(), config.unet_lr,
                                          weight_decay=0.01)
        self.scheduler = DDPMScheduler.from_config(sd15_scheduler_config())
        self.state = {'vae_step': 0, 'unet_step': 0, 'vae_loss': [], 'unet_loss': [],
                      'scaling_factor': None}
        self.data = load_pairs(config.data, 'train', config.height, config.width)
        self.latents: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self) -> str:
        """Write the resumable state to ``work_dir/checkpoint.pt``; return its path."""
        os.makedirs(self.config.work_dir, exist_ok=True)
        path = os.path.join(self.config.work_dir, CHECKPOINT)
        torch.save({'config': asdict(self.config), 'state': self.state,
                    'vae': self.vae.state_dict(), 'unet': self.unet.state_dict(),
                    'ema': self.ema, 'vae_opt': self.vae_opt.state_dict(),
                    'unet_opt': self.unet_opt.state_dict()}, path + '.tmp')
        os.replace(path + '.tmp', path)
        return path

    def load_checkpoint(self) -> bool:
        """Resume from ``work_dir/checkpoint.pt`` if there is one; return whether it did."""
        path = os.path.join(self.config.work_dir, CHECKPOINT)
        if not os.path.isfile(path):
            return False
        ckpt = torch.load(path, map_location='cpu', weights_only=False)
        saved, now = ckpt['config'], asdict(self.config)
        changed = sorted(k for k in now if k not in RESUMABLE and saved.get(k) != now[k])
        if changed:
            raise ValueError(f'{path} was written with other settings ({", ".join(changed)}); '
                             'use another --work folder or the same options')
        self.state = ckpt['state']
        self.vae.load_state_dict(ckpt['vae'])
        self.unet.load_state_dict(ckpt['unet'])
        self.ema = ckpt['ema']
        self.vae_opt.load_state_dict(ckpt['vae_opt'])
        self.unet_opt.load_state_dict(ckpt['unet_opt'])
        return True

    # ------------------------------------------------------------------ stage 1: VAE

    def _generator(self, stage: int, step: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.config.seed * 1_000_003 + stage * 100_003
                                             + step)

    def vae_batch(self, step: int) -> torch.Tensor:
        """Return half-size random crops of targets, garments and masked persons."""
        cfg = self.config
        gen = self._generator(1, step)
        count = len(self.data['target'])
        idx = torch.randint(count, (cfg.vae_batch,), generator=gen).numpy()
        kind = torch.randint(3, (cfg.vae_batch,), generator=gen).numpy()
        ch, cw = cfg.height // 2, cfg.width // 2
        top = torch.randint(cfg.height - ch + 1, (cfg.vae_batch,), generator=gen).numpy()
        left = torch.randint(cfg.width - cw + 1, (cfg.vae_batch,), generator=gen).numpy()
        crops = []
        for i, k, y, x in zip(idx, kind, top, left):
            image = (self.data['target'][i] if k == 0 else self.data['garment'][i] if k == 1
                     else masked_images(self.data['target'][i], self.data['mask'][i]))
            crops.append(image[y:y + ch, x:x + cw])
        return to_tensor(np.stack(crops))

    def vae_step(self) -> float:
        """One VAE optimisation step; returns the reconstruction loss."""
        step = self.state['vae_step']
        images = self.vae_batch(step)
        posterior = self.vae.encode(images).latent_dist
        gen = self._generator(2, step)
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
        recon = self.vae.decode(z).sample
        rec = F.l1_loss(recon, images) + F.mse_loss(recon, images)
        loss = rec + self.config.vae_kl * posterior.kl().mean()
        self._set_lr(self.vae_opt, self.config.vae_lr, step, self.config.vae_steps)
        self.vae_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.vae.parameters(), 1.0)
        self.vae_opt.step()
        self.state['vae_step'] = step + 1
        self.state['vae_loss'].append(rec.item())
        return rec.item()

    # ------------------------------------------------------------------ stage 2: UNet

    @torch.no_grad()
    def encode_dataset(self, batch: int = 64) -> dict[str, torch.Tensor]:
        """Scaled posterior-mean latents of targets, masked persons, garments; latent masks."""
        self.vae.eval()
        out = {'target': [], 'masked': [], 'garment': [], 'mask': []}
        data = self.data
        for start in range(0, len(data['target']), batch):
            sl = slice(start, start + batch)
            masks = torch.from_numpy(data['mask'][sl] >= 128)[:, None].float()
            for key, images in (('target', data['target'][sl]), ('garment', data['garment'][sl]),
                                ('masked', masked_images(data['target'][sl], data['mask'][sl]))):
                out[key].append(self.vae.encode(to_tensor(images)).latent_dist.mean)
            size = out['target'][-1].shape[-2:]
            out['mask'].append(F.interpolate(masks, size=size, mode='nearest'))
        latents = {k: torch.cat(v) for k, v in out.items()}
        if self.state['scaling_factor'] is None:
            self.state['scaling_factor'] = float(1.0 / latents['target'].std())
        factor = self.state['scaling_factor']
        for key in ('target', 'masked', 'garment'):
            latents[key] = latents[key] * factor
        return latents

    def cached_latents(self) -> dict[str, torch.Tensor]:
        """:meth:`encode_dataset`, kept in ``work_dir/latents.pt`` for resumed runs."""
        path = os.path.join(self.config.work_dir, LATENTS)
        if os.path.isfile(path) and self.state['scaling_factor'] is not None:
            return torch.load(path, map_location='cpu')
        latents = self.encode_dataset()
        os.makedirs(self.config.work_dir, exist_ok=True)
        torch.save(latents, path + '.tmp')
        os.replace(path + '.tmp', path)
        self.save_checkpoint()  # with the scaling factor the cached latents were made with
        return latents

    def unet_inputs(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(UNet input (B, 9, 2h, w), timesteps (B,), noise target (B, 4, 2h, w)) of a step."""
        cfg = self.config
        lat = self.latents
        gen = self._generator(3, step)
        idx = torch.randint(len(lat['target']), (cfg.unet_batch,), generator=gen)
        x0 = torch.cat([lat['target'][idx], lat['garment'][idx]], dim=2)
        cond = torch.cat([lat['masked'][idx], lat['garment'][idx]], dim=2)
        half = lat['target'].shape[2]
        drop = torch.rand(cfg.unet_batch, generator=gen) < cfg.cfg_dropout
        cond[drop, :, half:] = 0.0
        mask = torch.cat([lat['mask'][idx], torch.zeros_like(lat['mask'][idx])], dim=2)
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(self.scheduler.config.num_train_timesteps, (cfg.unet_batch,),
                          generator=gen)
        noisy = self.scheduler.add_noise(x0, noise, t)
        return torch.cat([noisy, mask, cond], dim=1), t, noise

    def unet_step(self) -> float:
        """One UNet optimisation step (and EMA update); returns the noise MSE."""
        if self.latents is None:
            self.latents = self.cached_latents()
        step = self.state['unet_step']
        self.unet.train()
        inputs, t, noise = self.unet_inputs(step)
        pred = self.unet(inputs, t, encoder_hidden_states=None).sample
        per_example = (pred - noise).pow(2).mean(dim=(1, 2, 3))
        loss = (self.noise_weights()[t] * per_example).mean()
        self._set_lr(self.unet_opt, self.config.unet_lr, step, self.config.unet_steps)
        self.unet_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.unet.parameters(), 1.0)
        self.unet_opt.step()
        decay = min(self.config.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for key, value in self.unet.state_dict().items():
                if value.is_floating_point():
                    self.ema[key].lerp_(value, 1.0 - decay)
                else:
                    self.ema[key].copy_(value)
        self.state['unet_step'] = step + 1
        mse = per_example.mean().item()
        self.state['unet_loss'].append(mse)
        return mse

    def noise_weights(self) -> torch.Tensor:
        """
        Per-timestep weights of the noise MSE, mean 1: max(1, min(1/SNR, noise_weight_cap)).

        With plain noise prediction an error in the clean image counts 1/SNR times less at
        high noise, so a small model learns late to follow the person and garment latents
        there, and sampling (which starts there) goes astray; this weights those steps up.
        """
        alphas = self.scheduler.alphas_cumprod
        weights = ((1.0 - alphas) / alphas).clamp(1.0, self.config.noise_weight_cap)
        return weights / weights.mean()

    def _set_lr(self, opt: torch.optim.Optimizer, base: float, step: int, total: int) -> None:
        """Linear warm-up, then cosine decay to 10 % of ``base``."""
        warm = self.config.warmup
        if step < warm:
            lr = base * (step + 1) / warm
        else:
            progress = (step - warm) / max(1, total - warm)
            lr = base * (0.1 + 0.45 * (1.0 + math.cos(math.pi * min(1.0, progress))))
        for group in opt.param_groups:
            group['lr'] = lr

    # ------------------------------------------------------------------ driver

    def train(self, progress: Progress | None = None) -> None:
        """Run (or finish) both stages, checkpointing every ``checkpoint_every`` steps."""
        cfg = self.config
        for name, total, step_fn, key in (('vae', cfg.vae_steps, self.vae_step, 'vae_step'),
                                          ('unet', cfg.unet_steps, self.unet_step,
                                           'unet_step')):
            steps = range(self.state[key], total)
            bar = steps if progress is None else progress(steps, name, total)
            self.vae.train(name == 'vae')
            for _ in bar:
                loss = step_fn()
                if hasattr(bar, 'set_postfix'):
                    bar.set_postfix(loss=f'{loss:.4f}', refresh=False)
                if self.state[key] % cfg.checkpoint_every == 0 or self.state[key] == total:
                    self.save_checkpoint()
            self.vae.eval()

    def export_model(self, out_dir: str) -> dict[str, str]:
        """Write the EMA UNet, VAE and attention files in the published layouts."""
        from safetensors.torch import save_file

        unet = UNet2DConditionModel(**demo_unet_config())
        unet.load_state_dict(self.ema)
        vae = AutoencoderKL(**demo_vae_config())
        vae.load_state_dict(self.vae.state_dict())
        vae.register_to_config(scaling_factor=self.state['scaling_factor'])
        paths = {'base_model': os.path.join(out_dir, 'base'),
                 'vae': os.path.join(out_dir, 'vae'),
                 'attn_ckpt': os.path.join(out_dir, 'catvton')}
        unet.save_pretrained(os.path.join(paths['base_model'], 'unet'))
        os.makedirs(os.path.join(paths['base_model'], 'scheduler'), exist_ok=True)
        with open(os.path.join(paths['base_model'], 'scheduler', 'scheduler_config.json'),
                  'w') as f:
            json.dump(sd15_scheduler_config(), f, indent=2)
        vae.save_pretrained(paths['vae'])
        state = {k: v.contiguous()
                 for k, v in attention.self_attention_modules(unet).state_dict().items()}
        state = attention.renumber_attention_state(state, attention.PUBLISHED_STRIDE)
        for version, folder in sorted(weights.ATTN_VERSIONS.items()):
            target = os.path.join(paths['attn_ckpt'], folder, 'attention')
            os.makedirs(target, exist_ok=True)
            save_file(state, os.path.join(target, 'model.safetensors'),
                      metadata={'demo_model': 'true', 'version': version})
        return paths
