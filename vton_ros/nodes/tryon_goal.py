"""
The image messages of tryon_server decoded: a goal's (for admission) and a camera pair's.

A TryOn goal becomes admission's :class:`~vton_ros.goals.admission.PlainGoal`. Each image is
checked from its header first (tryon.min_image_side, tryon.max_aspect_ratio: no copy of a
useless image), then decoded within tryon.max_image_pixels. An image that fails stands in
the plain goal as its INVALID_IMAGE error, which admission raises when it reaches that
image, so a goal with several faults is told the same first one as ever. A goal without a
person image takes the camera's newest frame and mask: :func:`camera_images`.
"""

import time
from typing import Any, Callable

import numpy as np
from sensor_msgs.msg import Image
from vton_interfaces.action import TryOn

from vton_ros.goals.admission import check_mask, check_size, GoalError, PlainGoal, Request
from vton_ros.goals.result_files import save_result
from vton_ros.nodes import image_conv

NO_PAIR = ('no person_image in the goal and no camera frame with a matching agnostic_mask '
           'received yet (are camera_node and segmentation_node running?)')


def is_empty(msg: Image) -> bool:
    """Return True for an Image nobody filled in (the goal's 'not given')."""
    return not (msg.width or msg.height or msg.encoding or len(msg.data))


def plain_goal(goal: TryOn.Goal, max_pixels: int, min_side: int,
               max_aspect: float) -> PlainGoal:
    """Decode a goal's images (RGB HxWx3, mask HxW uint8); copy its other fields."""
    limits = (max_pixels, min_side, max_aspect)
    return PlainGoal(
        garment_image=_decode(image_conv.to_rgb, goal.garment_image, 'garment_image', limits),
        garment_id=goal.garment_id, cloth_type=goal.cloth_type,
        person_image=_decode(image_conv.to_rgb, goal.person_image, 'person_image', limits),
        mask=_decode(image_conv.to_mono, goal.mask, 'mask', limits),
        num_inference_steps=goal.num_inference_steps, guidance_scale=goal.guidance_scale,
        seed=goal.seed)


def _decode(convert: Callable, msg: Image, name: str,
            limits: tuple) -> np.ndarray | GoalError | None:
    """Size checks from the header first, then decode; None when not given."""
    if is_empty(msg):
        return None
    max_pixels, min_side, max_aspect = limits
    try:
        check_size(int(msg.width), int(msg.height), min_side, max_aspect)
        return convert(msg, max_pixels)
    except ValueError as err:
        return GoalError('INVALID_IMAGE', f'{name}: {err}')


def camera_images(pair: tuple[Image, Image], request: Request, max_pixels: int,
                  live_cloth_type: str) -> tuple[np.ndarray, np.ndarray | None]:
    """
    Decode a camera (frame, mask) pair for a goal: (person HxWx3, mask HxW or None).

    The goal's own mask wins (it must fit the frame); the camera's mask is used only when
    the goal's cloth type is the live masks' one (``live_cloth_type``); None: make one.
    """
    mask = request.mask
    try:
        person = image_conv.to_rgb(pair[0], max_pixels)
        if mask is not None:
            check_mask(mask, person.shape[:2])
        elif request.cloth_type == live_cloth_type:
            mask = image_conv.to_mono(pair[1])
            if not (mask >= 128).any():
                raise GoalError('NO_PERSON_DETECTED', 'the latest camera mask is empty: '
                                'no person in view')
    except ValueError as err:
        raise GoalError('INVALID_IMAGE', f'camera frame: {err}') from None
    return person, mask


def wait_pair(pairs: Any, wait: float, check_stop: Callable[[], None]) -> tuple[Image, Image]:
    """Wait up to ``wait`` s for a camera (frame, mask) pair (check_stop raises to stop)."""
    start = time.monotonic()
    while (pair := pairs.latest()) is None and time.monotonic() - start < wait:
        check_stop()
        time.sleep(0.05)
    if pair is None:
        raise GoalError('NO_PERSON_FRAME', NO_PAIR)
    return pair


def failure(err: GoalError) -> TryOn.Result:
    """Return the result of a goal that ended with ``err`` (its code and message)."""
    return TryOn.Result(error_code=getattr(TryOn.Result, err.code), message=str(err))


def save_goal_result(save_dir: str, key: bytes, result: TryOn.Result, logger: Any) -> None:
    """Save a successful result in tryon.save_dir; a failure is logged (the try-on worked)."""
    try:
        save_result(save_dir, key.hex()[:12], image_conv.to_rgb(result.image),
                    image_conv.to_mono(result.mask),
                    {'seed': result.seed, 'timings': {t.name: t.seconds for t in result.timings}})
    except OSError as err:
        logger.warning(f'could not save the result: {err}')


def goal_key(goal_handle) -> bytes:
    """Return the goal's id as bytes (the key of admission and the tickets)."""
    return goal_handle.goal_id.uuid.tobytes()
