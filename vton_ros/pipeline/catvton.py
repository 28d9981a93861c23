"""
CatVTON virtual try-on: SD1.5-inpainting UNet with concatenated person/garment latents.

The algorithm (see the design notes): person and mask are framed (:mod:`.framing`) and
resized, the garment letterboxed on white; the masked person (``person * (mask < 0.5)``)
and the garment are encoded with the VAE (posterior mean times its scaling factor) and
stacked along the latent HEIGHT axis (person on top); the mask is downsampled (nearest) and
stacked with zeros for the garment half. Each step the UNet sees
``cat([scaled noisy latents, mask, masked latents], channels)`` with cross-attention
skipped and ``encoder_hidden_states=None``; classifier-free guidance uses a batch
[uncond, cond] whose uncond half has zeros in place of the garment latent. After the loop
the person half is decoded and mapped from [-1, 1] to uint8 RGB.

No rclpy here: the ROS nodes wrap :class:`CatVTONPipeline`.
"""


from collections.abc import Callable
import logging
import secrets
import time
from typing import Any

import cv2
from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
import numpy as np
import torch
import torch.nn.functional as F

from vton_ros.pipeline import attention, schedulers, weights
from vton_ros.pipeline.attention import sdpa_context
from vton_ros.pipeline.attention_sets import AttentionSets
from vton_ros.pipeline.checks import check_call
from vton_ros.pipeline.deepcache import DeepCacheUNet
from vton_ros.pipeline.device import dtype_name, resolve_device, resolve_dtype
from vton_ros.pipeline.forwards import Forwards
from vton_ros.pipeline.framing import Bounds, crop, frame_box
from vton_ros.pipeline.guidance import check_guidance_interval, guided_steps
from vton_ros.pipeline.latent_cache import LatentCache
from vton_ros.pipeline.loading import load_models, load_onnx_models, place_models
from vton_ros.pipeline.options import (PipelineOptions, StepCallback, TIMING_KEYS,
                                       TryOnCancelled, TryOnResult)
from vton_ros.pipeline.preprocess import check_image, letterbox
from vton_ros.pipeline.previews import latents_to_preview, repaint_blend, to_uint8

_LOG = logging.getLogger(__name__)


class CatVTONPipeline:
    """
    CatVTON try-on on a prepared UNet (attn2 skipped, CatVTON attn1) and VAE.

    Build with :meth:`from_pretrained` (published weights) or :meth:`from_components`.
    Not thread-safe: run one try-on at a time per pipeline.
    """

    def __init__(self, unet: UNet2DConditionModel, vae: AutoencoderKL, scheduler_config: dict,
                 *, scheduler: str = 'dpmpp_2m', device: torch.device,
                 dtype: torch.dtype, options: PipelineOptions | None = None,
                 safety_checker: Callable | None = None, random_weights: bool = False,
                 tiny_vae: AutoencoderTiny | None = None) -> None:
        options = options or PipelineOptions()
        if tiny_vae is None and options.uses_tiny_vae:
            raise ValueError('decoder/preview_decoder/encoder tiny needs a tiny VAE '
                             '(AutoencoderTiny): pass tiny_vae (from_pretrained loads '
                             'catvton.tiny_vae)')
        models = place_models(unet, vae, tiny_vae, options, device, dtype)
        self.unet = unet
        self.vae = vae
        self.tiny_vae = tiny_vae
        self._setup(models, scheduler_config, scheduler, device, options, safety_checker,
                    random_weights, int(vae.config.latent_channels),
                    2 ** (len(vae.config.block_out_channels) - 1))

    def _setup(self, models: Forwards, scheduler_config: dict, scheduler: str,
               device: torch.device, options: PipelineOptions, safety_checker: Callable | None,
               random_weights: bool, latent_channels: int, vae_scale_factor: int) -> None:
        """Set the state both backends share (models: the forwards, torch or onnxruntime)."""
        self.models = models
        self._options = options
        self.random_weights = random_weights  # RANDOM test weights: outputs are noise
        self.attention_sets: AttentionSets | None = None  # from_pretrained: swap versions
        self._latent_channels = latent_channels
        self._scheduler_config = dict(scheduler_config)
        self._scheduler_name = schedulers.check_scheduler_name(scheduler)
        self.device = device
        self.dtype = models.dtype
        self.safety_checker = safety_checker
        self.garment_cache = LatentCache(options.garment_cache_size)
        self.person_cache = LatentCache(1)  # the last frame+mask's masked latent
        self.vae_scale_factor = vae_scale_factor

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(cls, base_model: str = weights.DEFAULT_BASE_MODEL,
                        vae: str = weights.DEFAULT_VAE,
                        attn_ckpt: str = weights.DEFAULT_ATTN_CKPT,
                        attn_version: str = 'mix', device: str = 'auto', dtype: str = 'auto',
                        scheduler: str = 'dpmpp_2m', *, safety_checker: bool = False,
                        tiny_vae: str = weights.DEFAULT_TINY_VAE, cache_dir: str | None = None,
                        local_files_only: bool = False,
                        **option_values: Any) -> 'CatVTONPipeline':
        """
        Load CatVTON from hub ids or local folders in the published layouts.

        base_model: SD1.5 inpainting (unet/, scheduler/[, safety_checker/,
        feature_extractor/]); vae: folder with config.json + weights; attn_ckpt: CatVTON
        repo with <version>/attention/model.safetensors; attn_version: mix | vitonhd |
        dresscode. device: auto | cpu | cuda[:N]; dtype: auto | fp32 | fp16 | bf16.
        tiny_vae: TAESD folder or hub id (config.json + weights), loaded only when decoder,
        preview_decoder or encoder is 'tiny'. option_values: :class:`PipelineOptions` fields
        by name (attention_slicing, decoder, ...; an unknown name is a TypeError).
        Hub ids go through the Hugging Face cache (HF_HUB_OFFLINE honoured). Raises
        ModelNotFoundError for missing files, IncompatibleWeightsError for wrong weights,
        ValueError for unknown names.
        """
        schedulers.check_scheduler_name(scheduler)
        options = PipelineOptions(**option_values)
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        start = time.perf_counter()
        models = load_models(base_model, vae, attn_ckpt, attn_version, dev, dt,
                             safety_checker=safety_checker,
                             tiny_vae=tiny_vae if options.uses_tiny_vae else None,
                             cache_dir=cache_dir, local_files_only=local_files_only)
        pipe = cls(models.unet, models.vae, models.scheduler_config, scheduler=scheduler,
                   device=dev, dtype=dt, options=options, safety_checker=models.safety_checker,
                   random_weights=models.random_weights, tiny_vae=models.tiny_vae)
        pipe.attention_sets = AttentionSets(pipe.unet, attn_ckpt, attn_version,
                                            cache_dir=cache_dir,
                                            local_files_only=local_files_only)
        _LOG.info('CatVTON loaded in %.1f s: %s, %s %s, scheduler %s',
                  time.perf_counter() - start, models.description, dev, dtype_name(dt),
                  scheduler)
        return pipe

    @classmethod
    def from_components(cls, unet: UNet2DConditionModel, vae: AutoencoderKL,
                        scheduler_config: dict, *, attn_weights: str | None = None,
                        scheduler: str = 'dpmpp_2m', device: str = 'auto', dtype: str = 'auto',
                        options: PipelineOptions | None = None,
                        tiny_vae: AutoencoderTiny | None = None) -> 'CatVTONPipeline':
        """
        Build from in-memory models (tests, benchmarks with random full-size weights).

        attn_weights: optional CatVTON attention safetensors file, loaded strictly.
        The models are moved to the device/dtype in place.
        """
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        if attn_weights is not None:
            attention.load_attention_weights(unet, attn_weights)
        return cls(unet, vae, scheduler_config, scheduler=scheduler, device=dev, dtype=dt,
                   options=options, tiny_vae=tiny_vae)

    @classmethod
    def from_onnx(cls, onnx_dir: str, providers: str = 'cpu', scheduler: str = 'dpmpp_2m', *,
                  options: PipelineOptions | None = None,
                  threads: int = 0) -> 'CatVTONPipeline':
        """
        Build on the onnxruntime backend: the graphs of an export_onnx folder.

        providers: 'cpu', 'cuda', 'tensorrt', comma-separated (first preferred); threads:
        CPU intra-op threads (0: onnxruntime's default). The loop runs on CPU tensors; the
        attention version, size and precision are the export's (the caller checks its
        manifest against the settings). ValueError: see loading.load_onnx_models.
        """
        options = options or PipelineOptions()
        models = load_onnx_models(onnx_dir, providers, options, threads)
        manifest = models.manifest
        pipe = cls.__new__(cls)
        pipe._setup(models, manifest['scheduler_config'], scheduler, torch.device('cpu'),
                    options, None, manifest['random_weights'], manifest['latent_channels'],
                    manifest['vae_scale_factor'])
        pipe.unet = pipe.vae = pipe.tiny_vae = None
        return pipe

    # ------------------------------------------------------------------ settings

    @property
    def scheduler_name(self) -> str:
        """Name of the scheduler used by the next call."""
        return self._scheduler_name

    @property
    def options(self) -> PipelineOptions:
        """Memory/speed options fixed at construction."""
        return self._options

    def set_scheduler(self, name: str) -> None:
        """Use scheduler ``name`` (see schedulers.SCHEDULERS) from the next call on."""
        self._scheduler_name = schedulers.check_scheduler_name(name)

    def make_scheduler(self):
        """Build a fresh scheduler instance (per call, so no state leaks between runs)."""
        return schedulers.make_scheduler(self._scheduler_name, self._scheduler_config)

    @torch.inference_mode()
    def preview(self, latents: torch.Tensor) -> np.ndarray:
        """
        Preview image of step latents (the callback's (1, 4, 2h, w)): the person half.

        preview_decoder 'latent': :func:`latents_to_preview`, (h, w, 3) uint8 latent
        colours; 'tiny': the TAESD decode resized to (2h, 2w, 3) uint8 (a real image,
        a quarter of the output size on each side).
        """
        if self._options.preview_decoder == 'latent':
            return latents_to_preview(latents)
        person = latents[:, :, :latents.shape[2] // 2]
        image = to_uint8(self.models.decode(person.to(self.device, self.dtype), tiny=True))
        size = (2 * person.shape[3], 2 * person.shape[2])
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

    # ------------------------------------------------------------------ inference

    @torch.inference_mode()
    def __call__(self, person: np.ndarray, garment: np.ndarray, mask: np.ndarray, *,
                 num_inference_steps: int = 10, guidance_scale: float = 2.5,
                 height: int = 512, width: int = 384, seed: int | None = None,
                 generator: torch.Generator | None = None,
                 latents: torch.Tensor | None = None, eta: float = 1.0,
                 repaint: bool = False, callback: StepCallback | None = None,
                 guidance_start: float = 0.0, guidance_end: float = 1.0,
                 cache_interval: int = 1, cache_branch: int = 0, framing: str = 'centre',
                 person_bounds: Bounds | None = None) -> TryOnResult:
        """
        Dress ``person`` in ``garment`` inside ``mask``.

        person: HxWx3 uint8 RGB (any size; framed at height:width and resized).
        garment: HxWx3 uint8 RGB (letterboxed on white). mask: HxW uint8 (same size as
        person), >= 128 = repaint. height/width: output size, multiples of 8.
        seed/generator: noise source (at most one; neither = a random seed, reported).
        latents: optional initial noise (1, 4, 2*height/8, width/8), person half on top;
        times the scheduler's init sigma. eta: DDIM only. guidance_scale: CFG (if > 1).
        repaint: blend the result into the person outside the (feathered) mask.
        callback(step, total, timestep, latents): after each step (1-based; latents: the
        (1, 4, 2*h/8, w/8) fp32 state, read-only); returning True raises TryOnCancelled; an
        exception it raises propagates (nothing is left half-done).
        guidance_start/guidance_end: fractions of the steps with guidance (UNet batch 2);
        the other steps run the cond row only (batch 1). Defaults: every step.
        cache_interval/cache_branch: DeepCache feature reuse (1 = off; see deepcache).
        framing: 'centre' (the paper's crop) or 'person' (the box of ``person_bounds``, (top,
        left, bottom, right), or of the mask grown: framing.frame_box). -> TryOnResult.
        """
        start = time.perf_counter()
        check_call(person, garment, mask, num_inference_steps, guidance_scale, height, width,
                   seed, generator, latents, eta, callback, factor=self.vae_scale_factor,
                   latent_channels=self._latent_channels)
        self.models.check_size(height, width)
        self.check_speed_options(guidance_start, guidance_end, cache_interval, cache_branch)
        timings = dict.fromkeys(TIMING_KEYS, 0.0)

        # 1. preprocess: geometry, tensors in [-1, 1], binary mask
        crop_box = frame_box(person.shape[0], person.shape[1], height, width, framing, mask,
                             person_bounds)
        person_img = crop(person, crop_box, height, width)
        mask_img = crop(mask, crop_box, height, width, nearest=True)
        mask_img = np.where(mask_img >= 128, 255, 0).astype(np.uint8)
        person_t = self._to_tensor(person_img)
        mask_t = torch.from_numpy(mask_img).to(self.device)[None, None] >= 128
        masked_person = person_t * ~mask_t
        timings['preprocess'] = self._lap(start)

        # 2. VAE encode: masked person unless it is the last one, garment unless cached
        stage = time.perf_counter()
        key = self._latent_key(np.dstack([person_img, mask_img]), height, width)
        masked_latent = self.person_cache.get(key)
        if masked_latent is None:
            masked_latent = self._encode(masked_person)
            self.person_cache.put(key, masked_latent)
        garment_latent, cache_hit = self._garment_latent(garment, height, width)
        timings['vae_encode'] = self._lap(stage)

        # 3. denoise
        stage = time.perf_counter()
        if generator is None:
            if seed is None:
                seed = secrets.randbits(31)
            generator = torch.Generator('cpu').manual_seed(seed)
        else:
            seed = None
        cfg_steps = guided_steps(num_inference_steps, guidance_scale, guidance_start,
                                 guidance_end)
        deep = (DeepCacheUNet(self.models, cache_interval, cache_branch) if cache_interval > 1
                else None)
        with sdpa_context(self._options.sdpa_backend):
            final = self._denoise(masked_latent, garment_latent, mask_t, num_inference_steps,
                                  guidance_scale, cfg_steps, deep, generator, latents, eta,
                                  callback)
        timings['denoise'] = self._lap(stage)

        # 4. VAE decode of the person half, NaN/Inf guard, uint8
        stage = time.perf_counter()
        image, nan_recovered = self._decode(final[:, :, :masked_latent.shape[2]])
        if repaint:
            image = repaint_blend(person_img, image, mask_img)
        timings['vae_decode'] = self._lap(stage)

        # 5. optional safety check
        nsfw = False
        if self.safety_checker is not None:
            stage = time.perf_counter()
            image, nsfw = self.safety_checker(image)
            timings['safety_check'] = self._lap(stage)
        timings['total'] = time.perf_counter() - start
        _LOG.debug('try-on %dx%d, %d steps, g=%.2f: %s', height, width, num_inference_steps,
                   guidance_scale, ', '.join(f'{k} {v:.3f}s' for k, v in timings.items()))
        return TryOnResult(image=image, mask=mask_img, crop_box=crop_box, timings=timings,
                           seed=seed, nan_recovered=nan_recovered, nsfw=nsfw,
                           garment_cache_hit=cache_hit)

    def check_speed_options(self, guidance_start: float = 0.0, guidance_end: float = 1.0,
                            cache_interval: int = 1, cache_branch: int = 0) -> None:
        """Raise ValueError (with the valid values) for bad per-call speed options."""
        check_guidance_interval(guidance_start, guidance_end)
        self.models.check_cache(cache_interval, cache_branch)

    # ------------------------------------------------------------------ stages

    def _to_tensor(self, image: np.ndarray) -> torch.Tensor:
        """HxWx3 uint8 -> (1, 3, H, W) in [-1, 1], pipeline device/dtype."""
        tensor = torch.from_numpy(image).to(self.device).permute(2, 0, 1)[None]
        return (tensor.float() / 127.5 - 1.0).to(self.dtype)

    @torch.inference_mode()
    def cache_garment(self, garment: np.ndarray, height: int = 512, width: int = 384) -> bool:
        """
        Encode ``garment`` (HxWx3 uint8 RGB) into the garment cache ahead of a try-on.

        E.g. for a catalogue at start-up; returns True if it was already cached.
        """
        check_image(garment, 'garment')
        return self._garment_latent(garment, height, width)[1]

    def _garment_latent(self, garment: np.ndarray, height: int,
                        width: int) -> tuple[torch.Tensor, bool]:
        """Garment latent (1, 4, h/8, w/8) from the cache or the VAE; and whether cached."""
        key = self._latent_key(garment, height, width)
        latent = self.garment_cache.get(key)
        if latent is not None:
            return latent, True
        latent = self._encode(self._to_tensor(letterbox(garment, height, width)))
        self.garment_cache.put(key, latent)
        return latent, False

    def _latent_key(self, image: np.ndarray, height: int, width: int) -> tuple:
        """Cache key of the latent of an image (garment, or person with its mask)."""
        return LatentCache.key(image, height, width, self.dtype, self.device,
                               self._options.encoder)

    def _encode(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) in [-1, 1] -> scaled latents (1, 4, H/8, W/8), VAE or TAESD."""
        return self.models.encode(image, tiny=self._options.encoder == 'tiny')

    def _denoise(self, masked_latent: torch.Tensor, garment_latent: torch.Tensor,
                 mask: torch.Tensor, steps: int, guidance_scale: float, cfg_steps: list[bool],
                 deep: DeepCacheUNet | None, generator: torch.Generator,
                 latents: torch.Tensor | None, eta: float,
                 callback: StepCallback | None) -> torch.Tensor:
        """
        Run the sampling loop; returns the final (1, 4, 2h, w) fp32 latents.

        cfg_steps: per step, guidance on (batch [uncond, cond]) or off (cond row only).
        deep: feature reuse across steps, or None for a plain UNet forward every step.
        """
        scheduler = self.make_scheduler()
        scheduler.set_timesteps(steps, device=self.device)
        timesteps = scheduler.timesteps
        timesteps_host = timesteps.tolist()
        total = len(timesteps_host)
        concat = torch.cat([masked_latent, garment_latent], dim=2)  # stack on latent height
        shape = concat.shape
        if latents is None:
            noise = torch.randn(shape, generator=generator, device=generator.device,
                                dtype=torch.float32)
        else:
            noise = latents
        sample = noise.to(self.device, torch.float32) * scheduler.init_noise_sigma

        # constant part of the UNet input, built once: [noisy | mask | masked latents]
        do_cfg = any(cfg_steps)
        batch = 2 if do_cfg else 1
        mask_latent = F.interpolate(mask.to(self.dtype), size=masked_latent.shape[-2:],
                                    mode='nearest')
        channels = self._latent_channels
        unet_in = torch.empty((batch, 2 * channels + 1) + tuple(shape[2:]),
                              device=self.device, dtype=self.dtype)
        unet_in[:, channels:channels + 1, :masked_latent.shape[2]] = mask_latent
        unet_in[:, channels:channels + 1, masked_latent.shape[2]:] = 0
        unet_in[:, channels + 1:] = concat
        if do_cfg:  # uncond: zeros in place of the garment latent
            unet_in[0, channels + 1:, masked_latent.shape[2]:] = 0
        extra = schedulers.step_kwargs(scheduler, eta, generator)

        for i, t in enumerate(timesteps):
            unet_in[:, :channels] = scheduler.scale_model_input(sample, t)
            step_in = unet_in if cfg_steps[i] or not do_cfg else unet_in[1:]  # cond row
            if deep is None:
                noise_pred = self.models.unet(step_in, t).float()
            else:
                noise_pred = deep(step_in, t, i).float()
            if cfg_steps[i]:
                uncond, cond = noise_pred.chunk(2)
                noise_pred = uncond + guidance_scale * (cond - uncond)
            sample = scheduler.step(noise_pred, t, sample, return_dict=False, **extra)[0]
            if callback is not None and callback(i + 1, total, timesteps_host[i], sample):
                _LOG.info('try-on cancelled by the callback at step %d/%d', i + 1, total)
                raise TryOnCancelled(f'try-on cancelled after step {i + 1} of {total}',
                                     i + 1, total)
        return sample

    def _decode(self, latents: torch.Tensor) -> tuple[np.ndarray, bool]:
        """
        (1, 4, h, w) latents -> (8h, 8w, 3) uint8, with a NaN/Inf guard.

        decoder 'tiny': the TAESD decoder (takes the scaled latents), falling back to the
        VAE on NaN/Inf. The VAE: retried in fp32 on NaN/Inf at lower precision.
        """
        if self._options.decoder == 'tiny':
            image = self.models.decode(latents, tiny=True)
            if bool(torch.isfinite(image).all()):
                return to_uint8(image), False
            _LOG.warning('the tiny decoder produced NaN/Inf; decoding with the full VAE')
        image = self.models.decode(latents)
        recovered = False
        if not bool(torch.isfinite(image).all()):
            if self.dtype == torch.float32:
                raise FloatingPointError('the VAE decode produced NaN/Inf in fp32: the weights '
                                         'or latents are broken (check the VAE and UNet files)')
            _LOG.warning('VAE decode in %s produced NaN/Inf; redoing it in fp32',
                         dtype_name(self.dtype))
            image = self.models.decode_fp32(latents)
            recovered = True
            if not bool(torch.isfinite(image).all()):
                raise FloatingPointError('the VAE decode produced NaN/Inf even in fp32: the '
                                         'latents are broken (try precision fp32 or bf16)')
        return to_uint8(image), recovered or self._options.decoder == 'tiny'

    def _lap(self, since: float) -> float:
        """Seconds since ``since``, after waiting for queued device work."""
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - since
