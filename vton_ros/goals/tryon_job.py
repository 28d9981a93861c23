"""
The ROS-free work of tryon_server: model loading, camera frame+mask pairing, one try-on.

The node keeps the plumbing (topics, the action, messages); what it does with images lives
here so it can be tested without ROS. Errors a client must see are
:class:`vton_ros.goals.admission.GoalError`.
"""

import gc
import logging
import threading
import time
from typing import Any, Callable

import numpy as np
import torch

from vton_ros.goals import eta
from vton_ros.goals.admission import GoalError, Request
from vton_ros.goals.model_identity import identify, ModelIdentity
from vton_ros.pipeline import framing, preprocess
from vton_ros.pipeline.attention_sets import resolve_attn_version
from vton_ros.pipeline.catvton import CatVTONPipeline
from vton_ros.pipeline.device import configure_torch, dtype_name, resolve_device
from vton_ros.pipeline.masks import create_mask_generator, MaskGenerator
from vton_ros.pipeline.offload import pin_mmap_threshold
from vton_ros.pipeline.options import PipelineOptions, TIMING_KEYS
from vton_ros.pipeline.previews import latents_to_preview
from vton_ros.settings.views import CatVTONCall, CatVTONLoad, MaskerConfig

_LOG = logging.getLogger(__name__)
STAGES = TIMING_KEYS[:1] + ('segmentation',) + TIMING_KEYS[1:]  # the pipeline's + masking
PAIR_HISTORY = 30  # camera frames kept while waiting for their masks
HEALTH = ('ok', 'warn', 'error')


def configure_process(load: CatVTONLoad) -> None:
    """
    Set the process-wide state a config asks for: from a node's or tool's entry only.

    torch's cuDNN and CUDA memory flags; with offload sequential on a CPU, glibc's mmap
    threshold (see :func:`vton_ros.pipeline.offload.pin_mmap_threshold`).
    """
    device = resolve_device(load.device)
    configure_torch(device, load.cudnn_benchmark, load.gpu_memory_fraction)
    if load.offload == 'sequential' and device.type == 'cpu':
        pinned = pin_mmap_threshold()
        _LOG.info('offload sequential: glibc mmap threshold %s', 'fixed at 128 KiB'
                  if pinned else 'not set (no glibc): freed memory may stay resident')


def load_pipeline(load: CatVTONLoad, call: CatVTONCall,
                  cloth_type: str) -> tuple[CatVTONPipeline, str]:
    """Load CatVTON with the attention set of the first goals; return (pipe, summary)."""
    if load.backend == 'onnxruntime':
        return _load_onnx(load, call)
    first = resolve_attn_version(load.attn_version, cloth_type, call.height, call.width)
    pipe = CatVTONPipeline.from_pretrained(**load.pipeline_kwargs(first, call.scheduler))
    info = (f'{load.base_model} + {load.vae} + {load.attn_ckpt} ({load.attn_version}: '
            f'{first}) on {pipe.device} {dtype_name(pipe.dtype)}, scheduler '
            f'{pipe.scheduler_name}')
    return pipe, info


def model_identity(load: CatVTONLoad, pipe: CatVTONPipeline) -> ModelIdentity:
    """Return what ``pipe`` is (real, demo, random) from the folders it was loaded from."""
    if load.backend == 'onnxruntime':  # the export's own sources
        from vton_ros.pipeline import onnx_manifest

        sources = onnx_manifest.read_manifest(load.onnx_dir).get('sources', {})
        names = [sources.get(load.key(f), {}).get('source', getattr(load, f))
                 for f in ('base_model', 'vae', 'attn_ckpt')]
        return identify(*names, random_weights=pipe.random_weights)
    return identify(load.base_model, load.vae, load.attn_ckpt, pipe.random_weights)


def _load_onnx(load: CatVTONLoad, call: CatVTONCall) -> tuple[CatVTONPipeline, str]:
    """Load the onnxruntime backend: refuse what it cannot honour, check the export."""
    from vton_ros.pipeline import onnx_manifest

    refused = load.onnx_refusals()
    if refused:
        raise ValueError('backend onnxruntime: ' + '; '.join(refused))
    manifest = onnx_manifest.read_manifest(load.onnx_dir)
    onnx_manifest.check_manifest(manifest, load, call, load.onnx_dir)
    pipe = CatVTONPipeline.from_onnx(load.onnx_dir, load.onnx_providers, call.scheduler,
                                     options=PipelineOptions(**load.option_kwargs()),
                                     threads=torch.get_num_threads())
    info = (f'ONNX export {load.onnx_dir} ({manifest["attn_version"]}, {manifest["height"]}x'
            f'{manifest["width"]} {manifest["precision"]}) on onnxruntime '
            f'{load.onnx_providers}, scheduler {pipe.scheduler_name}')
    return pipe, info


def stamp_ns(msg: Any) -> int:
    """Header stamp of a message in nanoseconds."""
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


class FramePairs:
    """The newest camera frame with a mask of the same stamp; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frames: dict[int, Any] = {}
        self._pair: tuple[Any, Any] | None = None

    def frame(self, msg: Any) -> None:
        """Remember a frame until its mask arrives (the newest PAIR_HISTORY frames)."""
        with self._lock:
            self._frames[stamp_ns(msg)] = msg
            while len(self._frames) > PAIR_HISTORY:
                del self._frames[next(iter(self._frames))]

    def mask(self, msg: Any) -> None:
        """Pair a mask with the frame of the same stamp."""
        with self._lock:
            frame = self._frames.get(stamp_ns(msg))
            if frame is not None:
                self._pair = (frame, msg)

    def latest(self) -> tuple[Any, Any] | None:
        """Return the newest (frame, mask) pair, or None before the first."""
        with self._lock:
            return self._pair

    def recent(self) -> list[Any]:
        """Return the kept frames, newest first."""
        with self._lock:
            return list(reversed(self._frames.values()))

    def age(self, now_ns: int) -> float | None:
        """Seconds from the newest pair's stamp to ``now_ns``, or None before the first."""
        pair = self.latest()
        return None if pair is None else (now_ns - stamp_ns(pair[0])) / 1e9


def pair_health(age: float | None, max_age: float, level: str,
                message: str) -> tuple[str, str]:
    """Worsen a (level, message) by the newest pair's age: warn past max_age / 2, error past."""
    if age is None or age <= max_age / 2:
        return level, message
    stale = 'error' if age > max_age else 'warn'
    return (max(level, stale, key=HEALTH.index),
            f'newest camera frame+mask pair is {age:.1f} s old (tryon.pair_max_age '
            f'{max_age:g} s); {message}')


def check_pair_age(age: float, max_age: float) -> None:
    """Raise NO_PERSON_FRAME when the newest pair is too old to stand for the person now."""
    if age > max_age:
        raise GoalError('NO_PERSON_FRAME', f'latest camera frame+mask pair is {age:.1f} s old '
                        f'(tryon.pair_max_age {max_age:g} s): are camera_node and '
                        'segmentation_node running?')


class Maskers:
    """The mask generator for goals with a person but no mask, rebuilt when settings change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._masker: MaskGenerator | None = None
        self._config: MaskerConfig | None = None

    def __call__(self, config: MaskerConfig, person: np.ndarray,
                 cloth_type: str) -> tuple[np.ndarray, float]:
        """Return the agnostic mask (HxW uint8, the person marked) and the seconds it took."""
        start = time.monotonic()
        try:
            result = self._get(config)(person, cloth_type)
        except ValueError as err:  # e.g. a unet checkpoint trained for another type
            raise GoalError('INVALID_ARGUMENT', f'mask generation: {err}') from None
        if not result.person_found or not (result.mask >= 128).any():
            raise GoalError('NO_PERSON_DETECTED', f'no {cloth_type} garment region found in '
                            f'the image ({result.status}); send a mask or a photo that shows it')
        return result.marked_mask(), time.monotonic() - start

    def landmarks(self, config: MaskerConfig, person: np.ndarray) -> np.ndarray | None:
        """Return the (33, 3) pose of a frame (pose backend), or None (no person, unet)."""
        masker = self._get(config)
        return masker.detect(person)[0] if hasattr(masker, 'detect') else None

    def _get(self, config: MaskerConfig) -> MaskGenerator:
        with self._lock:
            if self._masker is None or self._config != config:
                masker = create_mask_generator(
                    backend=config.backend, checkpoint=config.checkpoint or None,
                    threshold=config.threshold, device=config.device,
                    precision=config.precision)
                self.close()
                self._masker, self._config = masker, config
            return self._masker

    def close(self) -> None:
        """Free the mask generator."""
        if self._masker is not None:
            self._masker.close()
            self._masker = None


def use_attention(pipe: CatVTONPipeline, setting: str, cloth_type: str, height: int,
                  width: int) -> str:
    """Put the goal's attention set (catvton.attn_version, auto or fixed) in; return it."""
    try:
        version = resolve_attn_version(setting, cloth_type, height, width)
        if pipe.attention_sets is not None:
            pipe.attention_sets.use(version)
    except (ValueError, FileNotFoundError) as err:  # incl. ModelNotFoundError
        raise GoalError('PIPELINE_ERROR', f'attention weights: {err}') from None
    return version


def try_on(pipe: CatVTONPipeline, request: Request, person: np.ndarray, mask: np.ndarray,
           timings: dict[str, float], callback: Callable | None, *,
           attn_version: str = 'mix') -> tuple[np.ndarray, np.ndarray, str]:
    """
    Run CatVTON with the goal's call config and put the result into the full person image.

    attn_version: the catvton.attn_version setting (auto picks per goal). The mask may mark
    the person (framing.mark_person: segmentation_node's and Maskers' masks). Framing person:
    the result goes back into the mask only (framing.paste); centre: into the centre crop,
    and with repaint pixels outside the mask are the person's own. Adds the pipeline's stage
    timings to ``timings``; returns (HxWx3 uint8 try-on, HxW binary mask, result notes).
    """
    call = request.call
    version = use_attention(pipe, attn_version, request.cloth_type, call.height, call.width)
    mask, person_bounds = framing.split_mask(mask)
    if call.mask_blur > 0:
        box = framing.frame_box(mask.shape[0], mask.shape[1], call.height, call.width,
                                call.framing, mask, person_bounds)
        mask = preprocess.blur_mask(mask, call.mask_blur * box.height / call.height)
    try:
        pipe.check_speed_options(call.guidance_start, call.guidance_end, call.cache_interval,
                                 call.cache_branch)
        pipe.models.check_size(call.height, call.width)  # onnxruntime: the export's size
    except ValueError as err:  # e.g. a cache branch this UNet does not have
        raise GoalError('INVALID_ARGUMENT', f'catvton settings: {err}') from None
    pipe.set_scheduler(call.scheduler)
    try:
        out = pipe(person, request.garment, mask, seed=call.seed, callback=callback,
                   person_bounds=person_bounds, **call.pipeline_kwargs())
    except ValueError as err:  # steps and guidance were checked: the images do not fit
        raise GoalError('INVALID_IMAGE', f'the pipeline cannot use the images: {err}') from None
    for stage in TIMING_KEYS[:-1]:  # all but 'total', which is the goal's own
        timings[stage] += out.timings[stage]
    start = time.monotonic()
    binary = np.where(mask >= 128, 255, 0).astype(np.uint8)
    if call.framing == 'person':  # the whole mask repainted; outside it the person's own
        image = framing.paste(out.image, out.crop_box, person, binary)
    else:
        image = preprocess.uncrop(out.image, out.crop_box, background=person)
        if call.repaint:  # the person's own full-resolution pixels outside the mask
            image[binary == 0] = person[binary == 0]
    timings['preprocess'] += time.monotonic() - start
    notes = ['ok', f'attention {version}']
    if pipe.random_weights:
        notes.append('RANDOM WEIGHTS (not a real try-on)')
    if getattr(out, 'nan_recovered', False):
        notes.append('VAE decode overflowed and was redone in fp32')
    if getattr(out, 'nsfw', False):
        notes.append('safety checker blanked the image')
    return image, binary, '; '.join(notes)


def goal_error(error: Exception) -> GoalError:
    """Turn an exception from a try-on into the client's error code and message."""
    if isinstance(error, GoalError):
        return error
    text = str(error)
    if isinstance(error, torch.cuda.OutOfMemoryError) or (
            isinstance(error, RuntimeError) and 'alloc' in text.lower()
            and 'memory' in text.lower()):
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return GoalError('OUT_OF_MEMORY', f'out of memory: {text.splitlines()[0]}; lower '
                         'catvton.height/width, enable catvton.attention_slicing/vae_slicing '
                         'or use fp16/bf16')
    if isinstance(error, RuntimeError):
        return GoalError('PIPELINE_ERROR', f'pipeline error: {error}')
    return GoalError('PIPELINE_ERROR', f'unexpected error: {error!r}')


def gpu_memory(pipe: CatVTONPipeline | None) -> dict[str, float]:
    """CUDA memory of the pipeline's device in MB (empty on CPU)."""
    if pipe is None or pipe.device.type != 'cuda':
        return {}
    return {'gpu_allocated_mb': torch.cuda.memory_allocated(pipe.device) / 2 ** 20,
            'gpu_max_allocated_mb': torch.cuda.max_memory_allocated(pipe.device) / 2 ** 20}


def run_kind(request: Request, person: np.ndarray, preview_every: int) -> tuple:
    """Return the kind of a goal's run for the ETA: what sets its steps' and tail's cost."""
    call = request.call
    return eta.run_kind(call.height, call.width, call.guidance_scale, call.guidance_start,
                        call.guidance_end, call.cache_interval, call.scheduler, preview_every,
                        person.shape)


class StepReporter:
    """
    Pipeline callback: reports every denoising step with a preview every Nth; may stop.

    The ETA comes from ``times``, the server's measured runs (:mod:`vton_ros.goals.eta`);
    :meth:`settle` adds this run to them.
    """

    def __init__(self, send: Callable[[int, int, float, float, np.ndarray | None], None],
                 should_stop: Callable[[], bool], preview_every: int,
                 preview: Callable[[torch.Tensor], np.ndarray] = latents_to_preview,
                 times: eta.StepTimes | None = None, kind: tuple = ()) -> None:
        self._send, self._should_stop, self._every = send, should_stop, preview_every
        self._preview = preview  # e.g. CatVTONPipeline.preview (tiny decoder)
        self._times, self._kind = times if times is not None else eta.StepTimes(), kind
        self._start = time.monotonic()
        self._last = 0.0
        self._at = 0.0  # when the last step ended
        self._steps: list[float] = []  # seconds of steps 2, 3, ...
        self._total = 0

    def __call__(self, step: int, total: int, timestep: Any, latents: torch.Tensor) -> bool:
        """Send (step, total, elapsed s, eta s or UNKNOWN, preview or None); True: stop."""
        now = time.monotonic()
        if step > 1 and self._at:
            self._steps.append(now - self._at)
        self._at, self._total = now, total
        preview = None
        if self._every and (step % self._every == 0 or step == total):
            preview = self._preview(latents)
        self._send(step, total, now - self._start,
                   self._times.remaining(self._kind, total, step, self._steps), preview)
        self._last = time.monotonic()
        return self._should_stop()

    def settle(self, gap: float = 0.25) -> None:
        """
        Leave a gap after the last feedback: rclpy drops feedback arriving after a result.

        A client on a busy machine takes the feedback late; at real sizes the VAE decode
        after the last step is longer than the gap, so it costs nothing there. Then the
        run's step times and its tail (last step to now) go into the ETA's record.
        """
        wait = self._last + gap - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        if self._total and len(self._steps) == self._total - 1:
            self._times.record(self._kind, self._total,
                               eta.RunTimes(tuple(self._steps), time.monotonic() - self._at))
