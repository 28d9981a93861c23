"""
tryon_server: the ``tryon`` action (vton_interfaces/TryOn) around CatVTONPipeline.

Keeps the latest camera frame + agnostic mask pair with matching stamps for goals without
a person image, streams feedback every denoising step (with a latent preview every
``tryon.preview_every`` steps), and answers with the try-on composed back into the full
person frame. One goal runs at a time; ``tryon.busy_policy`` decides what a new goal does
while one runs (reject | queue | preempt). Every failure aborts the goal with an error code
and a message; the server keeps serving.
"""

from collections import deque, OrderedDict
import gc
import json
import math
import os
from pathlib import Path
import random
import threading
import time

import cv2
import numpy as np
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from sensor_msgs.msg import Image
import torch
from vton_interfaces.action import TryOn
from vton_interfaces.msg import StageTiming

from vton_ros.camera_source import SourceError
from vton_ros.garments import GarmentCatalog
from vton_ros.nodes import common, image_conv
from vton_ros.params import CLOTH_TYPES
from vton_ros.pipeline import preprocess
from vton_ros.pipeline.catvton import (CatVTONPipeline, latents_to_preview, TIMING_KEYS,
                                       TryOnCancelled)
from vton_ros.pipeline.device import configure_torch, dtype_name, resolve_device
from vton_ros.pipeline.masks import create_mask_generator, MaskGenerator

R = TryOn.Result
STAGES = TIMING_KEYS[:1] + ('segmentation',) + TIMING_KEYS[1:]  # the pipeline's + masking
PAIR_HISTORY = 30  # camera frames kept while waiting for their masks


class GoalError(Exception):
    """Ends a goal with an error code and a message for the client."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def is_empty(msg: Image) -> bool:
    """Return True for an Image nobody filled in (the goal's 'not given')."""
    return not (msg.width or msg.height or msg.encoding or len(msg.data))


class TryOnServer(common.SchemaNode):
    """Serves TryOn goals with CatVTON."""

    def __init__(self) -> None:
        super().__init__('tryon_server')
        self._group = ReentrantCallbackGroup()
        qos = self.image_qos()
        self._frames: OrderedDict[int, Image] = OrderedDict()
        self._pair: tuple[Image, Image] | None = None
        self._pair_lock = threading.Lock()
        self.create_subscription(Image, 'image_raw', self.frame_callback, qos)
        self.create_subscription(Image, 'agnostic_mask', self.mask_callback, qos)
        self._result_pub = self.create_publisher(Image, 'tryon/result', 1)
        self._preview_pub = self.create_publisher(Image, 'tryon/preview', 1)
        self._diag = common.Diagnostics(self)
        catalog_dir = self.setting('garments.catalog_dir')
        self._catalog = GarmentCatalog(catalog_dir) if catalog_dir else None
        self._pipe: CatVTONPipeline | None = None
        self._masker: MaskGenerator | None = None
        self._masker_threshold = None
        self._masker_lock = threading.Lock()
        self._busy_lock = threading.Lock()
        self._active = None
        self._pending = 0  # accepted in goal_callback, not yet in handle_accepted_callback
        self._queue: deque = deque()
        self._preempted: set = set()
        self._stats = {'succeeded': 0, 'failed': 0}
        self._server = ActionServer(
            self, TryOn, 'tryon', execute_callback=self.execute_callback,
            goal_callback=self.goal_callback, cancel_callback=self.cancel_callback,
            handle_accepted_callback=self.handle_accepted_callback,
            callback_group=self._group)

    # ---- start-up -------------------------------------------------------------------
    def load(self) -> None:
        """Set torch's process flags and load the models (called from main)."""
        s = self.settings
        device = resolve_device(s['catvton.device'])
        configure_torch(device, cudnn_benchmark=s['catvton.cudnn_benchmark'],
                        gpu_memory_fraction=s['catvton.gpu_memory_fraction'])
        start = time.monotonic()
        self._pipe = CatVTONPipeline.from_pretrained(
            base_model=s['catvton.base_model'], vae=s['catvton.vae'],
            attn_ckpt=s['catvton.attn_ckpt'], attn_version=s['catvton.attn_version'],
            device=str(device), dtype=s['catvton.precision'],
            scheduler=s['catvton.scheduler'],
            attention_slicing='auto' if s['catvton.attention_slicing'] else None,
            vae_slicing=s['catvton.vae_slicing'], vae_tiling=s['catvton.vae_tiling'],
            channels_last=s['catvton.channels_last'], compile_unet=s['catvton.compile_unet'],
            safety_checker=s['catvton.safety_checker'],
            local_files_only=not s['catvton.allow_download'])
        seconds = time.monotonic() - start
        info = (f'{s["catvton.base_model"]} + {s["catvton.vae"]} + {s["catvton.attn_ckpt"]} '
                f'({s["catvton.attn_version"]}) on {self._pipe.device} '
                f'{dtype_name(self._pipe.dtype)}, scheduler {self._pipe.scheduler_name}')
        self.get_logger().info(f'loaded CatVTON in {seconds:.1f} s: {info}')
        if self._pipe.random_weights:
            self.get_logger().warning('RANDOM TEST WEIGHTS loaded: results are noise, not '
                                      'try-ons (run fetch_weights for the real model)')
        self._diag.update('ok', 'ready', model=info, load_seconds=seconds,
                          random_weights=self._pipe.random_weights)
        self._on_change.append(self._settings_changed)
        self._update_memory()

    def _settings_changed(self, changes: dict) -> None:
        if 'catvton.scheduler' in changes:
            self._pipe.set_scheduler(changes['catvton.scheduler'])

    # ---- camera frame + mask pairing -------------------------------------------------
    def frame_callback(self, msg: Image) -> None:
        """Remember recent frames by stamp until their mask arrives."""
        with self._pair_lock:
            self._frames[_stamp_ns(msg)] = msg
            while len(self._frames) > PAIR_HISTORY:
                self._frames.popitem(last=False)

    def mask_callback(self, msg: Image) -> None:
        """Pair a mask with the frame of the same stamp."""
        with self._pair_lock:
            frame = self._frames.get(_stamp_ns(msg))
            if frame is not None:
                self._pair = (frame, msg)

    # ---- goal policy ------------------------------------------------------------------
    def goal_callback(self, goal_request: TryOn.Goal) -> GoalResponse:
        """Accept unless busy with policy reject, or the queue is full."""
        with self._busy_lock:
            busy = self._active is not None or self._pending > 0
            policy = self.setting('tryon.busy_policy')
            if busy and policy == 'reject':
                self.get_logger().warning('goal rejected: busy (tryon.busy_policy reject)')
                return GoalResponse.REJECT
            if busy and policy == 'queue' and len(self._queue) + self._pending >= \
                    self.setting('tryon.queue_size'):
                self.get_logger().warning('goal rejected: queue full (tryon.queue_size)')
                return GoalResponse.REJECT
            self._pending += 1
        return GoalResponse.ACCEPT

    def handle_accepted_callback(self, goal_handle) -> None:
        """Run now, or queue; with preempt, the running and queued goals are stopped."""
        with self._busy_lock:
            self._pending -= 1
            if self._active is None:
                self._active = goal_handle
                run_now = True
            else:
                run_now = False
                if self.setting('tryon.busy_policy') == 'preempt':
                    self._preempted.add(self._active.goal_id.uuid.tobytes())
                    self._preempted.update(g.goal_id.uuid.tobytes() for g in self._queue)
                self._queue.append(goal_handle)
        if run_now:
            goal_handle.execute()

    def cancel_callback(self, goal_handle) -> CancelResponse:
        """Accept every cancel: a running goal stops within a step, a queued one at once."""
        with self._busy_lock:
            queued = goal_handle in self._queue
            if queued:
                self._queue.remove(goal_handle)
        if queued:
            goal_handle.execute()  # ends as canceled without waiting for its turn
        return CancelResponse.ACCEPT

    def _start_next(self, finished) -> None:
        with self._busy_lock:
            if self._active is not finished:  # a queued goal that was canceled early
                return
            self._active = self._queue.popleft() if self._queue else None
            nxt = self._active
        if nxt is not None:
            nxt.execute()

    # ---- execution ------------------------------------------------------------------
    def execute_callback(self, goal_handle) -> TryOn.Result:
        """Run one try-on; always end the goal with a result, then start the next goal."""
        key = goal_handle.goal_id.uuid.tobytes()
        start = time.monotonic()
        result = R()
        try:
            if self._should_stop(goal_handle):
                raise TryOnCancelled('stopped before it started')
            result = self._run(goal_handle, start)
            _finish(goal_handle, 'succeed')
        except TryOnCancelled as err:
            preempted = key in self._preempted
            result.error_code = R.PREEMPTED if preempted else R.CANCELED
            result.message = ('preempted by a newer goal' if preempted else 'canceled') + \
                f' ({err})'
            _finish(goal_handle, 'abort' if preempted else 'canceled')
        except GoalError as err:
            self._fail(goal_handle, result, err.code, str(err))
        except torch.cuda.OutOfMemoryError as err:
            self._free_memory()
            self._fail(goal_handle, result, R.OUT_OF_MEMORY,
                       f'out of memory: {str(err).splitlines()[0]}; lower catvton.height/'
                       'width, enable catvton.attention_slicing/vae_slicing or use fp16/bf16')
        except RuntimeError as err:
            if 'alloc' in str(err).lower() and 'memory' in str(err).lower():
                self._free_memory()
                self._fail(goal_handle, result, R.OUT_OF_MEMORY,
                           f'out of memory: {str(err).splitlines()[0]}')
            else:
                self._fail(goal_handle, result, R.PIPELINE_ERROR, f'pipeline error: {err}')
        except Exception as err:  # noqa: B902 - the goal boundary: never kill the server
            self.get_logger().error(f'unexpected error in goal: {err!r}')
            self._fail(goal_handle, result, R.PIPELINE_ERROR, f'unexpected error: {err!r}')
        finally:
            self._preempted.discard(key)
            self._start_next(goal_handle)
            self._update_memory()
        return result

    def _fail(self, goal_handle, result: TryOn.Result, code: int, message: str) -> None:
        self.get_logger().error(f'goal aborted ({code}): {message}')
        result.error_code, result.message = code, message
        self._stats['failed'] += 1
        self._diag.update('warn', 'last goal failed', last_error=message,
                          goals_failed=self._stats['failed'])
        _finish(goal_handle, 'abort')

    def _should_stop(self, goal_handle) -> bool:
        """Return True if the goal was canceled or preempted, or the node is shutting down."""
        return (goal_handle.is_cancel_requested or not self.context.ok()
                or goal_handle.goal_id.uuid.tobytes() in self._preempted)

    def _run(self, goal_handle, start: float) -> TryOn.Result:
        goal = goal_handle.request
        timings = dict.fromkeys(STAGES, 0.0)
        t0 = time.monotonic()
        max_pixels = self.setting('tryon.max_image_pixels')
        garment, catalog_type = self._garment(goal, max_pixels)
        cloth_type = goal.cloth_type or catalog_type or self.setting('segmentation.cloth_type')
        if cloth_type not in CLOTH_TYPES:
            raise GoalError(R.INVALID_ARGUMENT, f'unknown cloth_type {goal.cloth_type!r}; '
                            f'valid: {", ".join(CLOTH_TYPES)}')
        steps, guidance, seed = self._numbers(goal)
        person_msg, person, mask, waited = self._person(goal_handle, cloth_type, max_pixels,
                                                        timings)
        timings['preprocess'] = time.monotonic() - t0 - timings['segmentation'] - waited

        height, width = self.setting('catvton.height'), self.setting('catvton.width')
        feedback = _FeedbackSender(self, goal_handle, self.setting('tryon.preview_every'))
        out = self._pipe(person, garment, mask, num_inference_steps=steps,
                         guidance_scale=guidance, height=height, width=width, seed=seed,
                         repaint=self.setting('catvton.repaint'), callback=feedback)
        for stage in TIMING_KEYS[:-1]:  # all but 'total', which is the goal's own
            timings[stage] += out.timings[stage]
        t1 = time.monotonic()
        image = preprocess.uncrop(out.image, out.crop_box, background=person)
        binary = np.where(mask >= 128, 255, 0).astype(np.uint8)
        timings['preprocess'] += time.monotonic() - t1
        timings['total'] = time.monotonic() - start - waited  # waiting for a frame is not work
        header = person_msg.header if person_msg is not None else None
        result = R(image=image_conv.from_rgb(image, header),
                   mask=image_conv.from_mono(binary, header), seed=seed,
                   timings=[StageTiming(name=k, seconds=v) for k, v in timings.items()],
                   error_code=R.SUCCESS, message=self._message(out))
        self._result_pub.publish(result.image)
        if self.setting('tryon.save_dir'):
            try:
                self._save(image, binary, timings, seed)
            except OSError as err:  # the try-on itself succeeded
                self.get_logger().warning(f'could not save the result: {err}')
        self._stats['succeeded'] += 1
        self._diag.update('ok', 'last goal succeeded', last_total_s=timings['total'],
                          last_denoise_s=timings['denoise'],
                          goals_succeeded=self._stats['succeeded'])
        feedback.settle()
        return result

    def _message(self, out) -> str:
        notes = ['ok']
        if self._pipe.random_weights:
            notes.append('RANDOM WEIGHTS (not a real try-on)')
        if getattr(out, 'nan_recovered', False):
            notes.append('VAE decode overflowed and was redone in fp32')
        if getattr(out, 'nsfw', False):
            notes.append('safety checker blanked the image')
        return '; '.join(notes)

    def _garment(self, goal: TryOn.Goal, max_pixels: int) -> tuple[np.ndarray, str | None]:
        if not is_empty(goal.garment_image):
            try:
                return image_conv.to_rgb(goal.garment_image, max_pixels), None
            except ValueError as err:
                raise GoalError(R.INVALID_IMAGE, f'garment_image: {err}') from None
        if not goal.garment_id:
            raise GoalError(R.INVALID_ARGUMENT, 'no garment: set garment_image or garment_id')
        if self._catalog is None:
            raise GoalError(R.UNKNOWN_GARMENT, f'garment_id {goal.garment_id!r} given but no '
                            'catalogue is configured (garments.catalog_dir)')
        try:
            return self._catalog.load(goal.garment_id)
        except KeyError as err:
            raise GoalError(R.UNKNOWN_GARMENT, err.args[0]) from None
        except (ValueError, OSError, SourceError) as err:
            raise GoalError(R.INVALID_IMAGE, f'garment {goal.garment_id}: {err}') from None

    def _numbers(self, goal: TryOn.Goal) -> tuple[int, float, int]:
        steps = goal.num_inference_steps or self.setting('catvton.num_inference_steps')
        if not 1 <= steps <= 1000:
            raise GoalError(R.INVALID_ARGUMENT, f'num_inference_steps={steps} must be in '
                            '[1, 1000] (0 = node default)')
        guidance = goal.guidance_scale
        if math.isnan(guidance) or math.isinf(guidance) or guidance > 50.0:
            raise GoalError(R.INVALID_ARGUMENT, f'guidance_scale={guidance} must be finite and '
                            '<= 50 (negative = node default)')
        if guidance < 0:
            guidance = self.setting('catvton.guidance_scale')
        seed = goal.seed if goal.seed >= 0 else self.setting('catvton.seed')
        if seed < 0:
            seed = random.SystemRandom().randrange(2 ** 31)
        return steps, float(guidance), int(seed)

    def _person(self, goal_handle, cloth_type: str, max_pixels: int,
                timings: dict) -> tuple[Image | None, np.ndarray, np.ndarray, float]:
        """Return the person message, image, mask and seconds spent waiting for a frame."""
        goal = goal_handle.request
        mask, waited = None, 0.0
        if not is_empty(goal.person_image):
            person_msg = goal.person_image
            try:
                person = image_conv.to_rgb(person_msg, max_pixels)
            except ValueError as err:
                raise GoalError(R.INVALID_IMAGE, f'person_image: {err}') from None
        else:
            waited = time.monotonic()
            person_msg, mask_msg = self._latest_pair(goal_handle)
            waited = time.monotonic() - waited
            person = image_conv.to_rgb(person_msg, max_pixels)
            if cloth_type == self.setting('segmentation.cloth_type'):
                mask = image_conv.to_mono(mask_msg, max_pixels)
        if not is_empty(goal.mask):
            try:
                mask = image_conv.to_mono(goal.mask, max_pixels)
            except ValueError as err:
                raise GoalError(R.INVALID_IMAGE, f'mask: {err}') from None
            if mask.shape != person.shape[:2]:
                raise GoalError(R.INVALID_IMAGE, f'mask is {mask.shape[1]}x{mask.shape[0]} but '
                                f'the person image is {person.shape[1]}x{person.shape[0]}')
        if mask is None:
            t = time.monotonic()
            try:
                result = self._mask_generator()(person, cloth_type)
            except ValueError as err:  # e.g. a unet checkpoint trained for another type
                raise GoalError(R.INVALID_ARGUMENT, f'mask generation: {err}') from None
            timings['segmentation'] = time.monotonic() - t
            if not result.person_found or not (result.mask >= 128).any():
                raise GoalError(R.NO_PERSON_DETECTED, f'no {cloth_type} garment region found '
                                f'in the image ({result.status}); send a mask or a photo '
                                'that shows it')
            mask = result.mask
        if not (mask >= 128).any():
            if is_empty(goal.mask):  # the camera's mask: nobody in view
                raise GoalError(R.NO_PERSON_DETECTED, 'the latest camera mask is empty: no '
                                'person in view')
            raise GoalError(R.INVALID_IMAGE, 'mask is empty: nothing to repaint')
        return person_msg, person, mask, waited

    def _latest_pair(self, goal_handle) -> tuple[Image, Image]:
        deadline = time.monotonic() + self.setting('tryon.pair_wait')
        while True:
            with self._pair_lock:
                pair = self._pair
            if pair is not None or time.monotonic() >= deadline:
                break
            if self._should_stop(goal_handle):
                raise TryOnCancelled('stopped while waiting for a camera frame')
            time.sleep(0.05)
        if pair is None:
            raise GoalError(R.NO_PERSON_FRAME, 'no person_image in the goal and no camera frame '
                            'with a matching agnostic_mask received yet (are camera_node and '
                            'segmentation_node running?)')
        age = (self.get_clock().now().nanoseconds - _stamp_ns(pair[0])) / 1e9
        if age > self.setting('tryon.pair_max_age'):
            raise GoalError(R.NO_PERSON_FRAME, f'latest camera frame+mask pair is {age:.1f} s '
                            f'old (tryon.pair_max_age {self.setting("tryon.pair_max_age")} s)')
        return pair

    def _mask_generator(self) -> MaskGenerator:
        threshold = self.setting('segmentation.threshold')
        with self._masker_lock:
            if self._masker is None or self._masker_threshold != threshold:
                masker = create_mask_generator(
                    backend=self.setting('segmentation.backend'),
                    checkpoint=self.setting('segmentation.checkpoint') or None,
                    threshold=threshold, device=self.setting('segmentation.device'),
                    precision=self.setting('segmentation.precision'))
                if self._masker is not None:
                    self._masker.close()
                self._masker, self._masker_threshold = masker, threshold
            return self._masker

    def _save(self, image: np.ndarray, mask: np.ndarray, timings: dict, seed: int) -> None:
        folder = Path(self.setting('tryon.save_dir')).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / time.strftime(f'tryon_%Y%m%d_%H%M%S_{seed}')
        cv2.imwrite(f'{stem}.png', cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(f'{stem}_mask.png', mask)
        Path(f'{stem}.json').write_text(json.dumps({'seed': seed, 'timings': timings}))

    def _free_memory(self) -> None:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _update_memory(self) -> None:
        if self._pipe is not None and self._pipe.device.type == 'cuda':
            dev = self._pipe.device
            self._diag.update(gpu_allocated_mb=torch.cuda.memory_allocated(dev) / 2 ** 20,
                              gpu_max_allocated_mb=torch.cuda.max_memory_allocated(dev) / 2 ** 20)

    def close(self) -> None:
        """Free the mask generator."""
        if self._masker is not None:
            self._masker.close()


class _FeedbackSender:
    """Pipeline callback: feedback per step, previews, cancel and preempt checks."""

    def __init__(self, node: TryOnServer, goal_handle, preview_every: int) -> None:
        self._node, self._goal, self._every = node, goal_handle, preview_every
        self._start = time.monotonic()
        self._last = 0.0

    def __call__(self, step: int, total: int, timestep, latents) -> bool:
        now = time.monotonic()
        elapsed = now - self._start
        fb = TryOn.Feedback(step=step, total_steps=total, elapsed_sec=elapsed,
                            eta_sec=elapsed / step * (total - step))
        if self._every and (step % self._every == 0 or step == total):
            fb.preview = image_conv.from_rgb(latents_to_preview(latents))
            self._node._preview_pub.publish(fb.preview)
        self._goal.publish_feedback(fb)
        self._last = time.monotonic()
        return self._node._should_stop(self._goal)

    def settle(self, gap: float = 0.05) -> None:
        """Leave a gap after the last feedback: rclpy drops feedback arriving after a result."""
        wait = self._last + gap - time.monotonic()
        if wait > 0:
            time.sleep(wait)


def _finish(goal_handle, how: str) -> None:
    if goal_handle.is_active:
        if how == 'canceled' and not goal_handle.is_cancel_requested:
            how = 'abort'  # stopped by shutdown, not by the client
        getattr(goal_handle, how)()


def _stamp_ns(msg: Image) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def main(args: list[str] | None = None) -> None:
    """Run tryon_server: declare parameters, configure torch, load the models, serve."""
    os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
    common.run(TryOnServer, args, start=TryOnServer.load)


if __name__ == '__main__':
    main()
