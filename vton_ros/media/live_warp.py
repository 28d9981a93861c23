"""
Live follow: keep a try-on result on the moving shopper between renders (no torch, no ROS).

A try-on is made from one camera frame. Its garment layer (the result inside its mask) is
carried to each new frame by geometry alone:

1. The BlazePose landmarks (the pose masker's, :class:`vton_ros.pipeline.masks.MaskResult`)
   of the try-on frame and the new frame are matched on the body points that are visible in
   both (shoulders, elbows, wrists, hips, knees, ankles, nose).
2. The global move: a similarity (``cv2.estimateAffinePartial2D``, least median of
   squares) of those points, refined, when the try-on frame is known (its grey copy from
   :func:`~vton_ros.media.registration.small_gray`), by registering the two frames' images
   inside the try-on's garment region (:mod:`vton_ros.media.registration`). mediapipe's
   landmarks of one body in two frames disagree by 10-40 px, which no fit over them
   averages out; the clothing's own texture pins the move to a pixel. The registration is
   kept only if it converged with a high correlation and agrees with the landmarks within
   ``MAX_DISAGREEMENT`` body scales.
3. Each body point's residual from the global move counts as landmark noise up to
   ``RIGID_TOLERANCE`` body scales (moved rigidly) and as a non-rigid move from twice that
   (a raised arm), ramping between. A piecewise-affine map from new-frame to try-on-frame
   points on the Delaunay mesh of the landmarks, points beside the limbs and anchors
   around the frame (moved by the global move): scipy's ``LinearNDInterpolator`` (the same
   map as scikit-image's ``PiecewiseAffineTransform``, which the tests compare it with, at
   about 1/100 of its cost), evaluated on a coarse grid, brought to full size and applied
   with ``cv2.remap`` (:mod:`vton_ros.media.live_composite`). Without a non-rigid point the
   map is the global affine itself.
4. The warped result is composited into the new frame inside the new frame's agnostic mask
   and wherever the warped garment reaches within ``GARMENT_BAND`` body scales of it (a
   mask from jittery landmarks does not cut the garment), fully opaque inside and
   feathered outwards over ``feather`` body scales, so no original clothing shows at the
   border (the agnostic mask already reaches past the body outline).

The warp is not believable when the shopper turned away (a key landmark is not visible:
shoulders for upper, hips for lower garments), left (no landmarks or an empty mask), or
moved too far: scaled or rotated beyond the limits, a body point displaced by more than
``max_displacement`` body scales beyond the global move, or a folded mesh triangle. Then
:meth:`LiveFollower.follow` returns the raw frame and the reason.

Posing a frame (mediapipe) costs several times the rest, so only some frames need be posed
(:meth:`LiveFollower.follow`); a frame between (:meth:`LiveFollower.follow_between`) is
registered on the last posed frame (ECC, an affine, inside its garment region, starting
from the last frame between's move) and takes that frame's map and mask moved by it. The
checks above stay with the posed frames; a frame between that does not register well
(correlation below ``BETWEEN_CORRELATION``) or moved more than ``BETWEEN_MAX_MOVE`` body
scales is posed instead.
"""

from dataclasses import dataclass, field
import math
from typing import Callable

import cv2
import numpy as np
from scipy.interpolate import LinearNDInterpolator
from scipy.spatial import Delaunay

from vton_ros.media.live_composite import composite, garment_box, moved_mask, WarpMap
from vton_ros.media.registration import register, REGISTER_SCALE, small_gray

# BlazePose indices (the same as vton_ros.pipeline.masks, which needs torch to import)
NOSE, L_SHOULDER, R_SHOULDER, L_HIP, R_HIP = 0, 11, 12, 23, 24
# body points the mesh uses per cloth type (legs move a top only through the hips)
WARP_POINTS = {'upper': (0, 11, 12, 13, 14, 15, 16, 23, 24),
               'lower': (11, 12, 23, 24, 25, 26, 27, 28),
               'overall': (0, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)}
KEY_POINTS = {'upper': (11, 12), 'lower': (23, 24), 'overall': (11, 12, 23, 24)}
NUM_LANDMARKS = 33
LIMBS = ((11, 13), (13, 15), (12, 14), (14, 16), (23, 25), (25, 27), (24, 26), (26, 28))
LIMB_SIDE = 0.3  # mesh points beside each limb's middle, body scales from its axis
RIGID_TOLERANCE = 0.3  # body scales of a point's residual taken for landmark noise
GARMENT_BAND = 0.3  # body scales the warped garment may reach past the new frame's mask
REGISTER_ERODE = 0.1  # body scales the garment region shrinks by for registration
MAX_DISAGREEMENT = 0.5  # body scales registration may move a body point off the landmarks
BETWEEN_MAX_MOVE = 0.5  # body scales a frame between may move from the last posed one
BETWEEN_CORRELATION = 0.9  # ECC's correlation a frame between must reach with the posed

STATUS_LIVE = 'live'
STATUS_NO_RESULT = 'no result'
STATUS_NO_PERSON = 'no person'
STATUS_TURNED = 'turned away'
STATUS_TOO_FAR = 'moved too far'


@dataclass(frozen=True)
class LiveConfig:
    """Limits of a believable warp and the composite's feather (see the module doc)."""

    min_visibility: float = 0.5     # landmarks below this visibility are not used
    max_displacement: float = 1.2   # body scales a point may move beyond the global move
    max_scale: float = 1.4          # allowed global scale change, either way
    max_rotation: float = 30.0      # allowed global rotation, degrees
    min_width_ratio: float = 0.6    # shoulder width (scale-corrected) below this: turned
    feather: float = 0.03           # outward feather width / body scale

    def __post_init__(self) -> None:
        """Validate ranges (ValueError)."""
        if not 0.0 <= self.min_visibility <= 1.0:
            raise ValueError(f'min_visibility must be in [0, 1], got {self.min_visibility}')
        if self.max_displacement <= 0.0 or self.max_scale < 1.0 or self.max_rotation <= 0.0:
            raise ValueError('max_displacement and max_rotation must be > 0 and max_scale '
                             f'>= 1, got {self.max_displacement}, {self.max_rotation}, '
                             f'{self.max_scale}')
        if not 0.0 <= self.min_width_ratio < 1.0 or not 0.0 <= self.feather <= 0.5:
            raise ValueError('min_width_ratio must be in [0, 1) and feather in [0, 0.5], got '
                             f'{self.min_width_ratio}, {self.feather}')


@dataclass(frozen=True)
class LiveFrame:
    """
    One live frame.

    image: HxWx3 uint8 RGB, the composite (status 'live') or the raw frame.
    status: 'live', 'no result', 'no person', 'turned away' or 'moved too far'.
    region: HxW bool, where the garment was put (empty unless live).
    warped_mask: HxW uint8 0/255, the try-on mask carried to this frame (None unless live).
    """

    image: np.ndarray
    status: str
    region: np.ndarray = field(repr=False)
    warped_mask: np.ndarray | None = field(default=None, repr=False)

    @property
    def garment(self) -> np.ndarray:
        """Return where the composite shows the try-on's garment layer (HxW bool)."""
        if self.warped_mask is None:
            return self.region
        return self.region & (self.warped_mask > 127)

    @property
    def live(self) -> bool:
        """Whether the garment is on this frame."""
        return self.status == STATUS_LIVE


def check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """Return (33, 3) float64 x, y (px), visibility; ValueError for another shape."""
    arr = np.asarray(landmarks, np.float64)
    if arr.ndim != 2 or arr.shape[0] != NUM_LANDMARKS or arr.shape[1] < 3:
        raise ValueError(f'landmarks must be (33, 3) BlazePose x, y, visibility, got '
                         f'{arr.shape}')
    return arr[:, :3]


def body_scale(landmarks: np.ndarray) -> float:
    """Shoulder width, at least half the shoulder-to-hip length (the masker's scale s)."""
    p = landmarks[:, :2]
    mid_sh = (p[L_SHOULDER] + p[R_SHOULDER]) / 2
    mid_hip = (p[L_HIP] + p[R_HIP]) / 2
    return max(float(np.linalg.norm(p[L_SHOULDER] - p[R_SHOULDER])),
               0.5 * float(np.linalg.norm(mid_hip - mid_sh)), 4.0)


def _anchors(width: int, height: int) -> np.ndarray:
    """Points on a rectangle 25 % larger than the frame (corners and edge thirds)."""
    xs = np.linspace(-0.25 * width, 1.25 * width, 4)
    ys = np.linspace(-0.25 * height, 1.25 * height, 4)
    ring = [(x, y) for x in xs for y in ys if x in (xs[0], xs[-1]) or y in (ys[0], ys[-1])]
    return np.array(ring, np.float64)


def _folded(tri: Delaunay, old_pts: np.ndarray) -> bool:
    """Whether a triangle of the new points' mesh flips its orientation in the old frame."""
    def signed(pts: np.ndarray) -> np.ndarray:
        a, b, c = (pts[tri.simplices[:, k]] for k in range(3))
        ab, ac = b - a, c - a
        return ab[:, 0] * ac[:, 1] - ab[:, 1] * ac[:, 0]
    return bool(np.any(np.sign(signed(tri.points)) != np.sign(signed(old_pts))))


def _mesh_points(lms: np.ndarray, used: list[int]) -> np.ndarray:
    """Return the used landmarks plus two points beside the middle of each limb they span."""
    p = lms[:, :2]
    s = body_scale(lms)
    extra = []
    for a, b in LIMBS:
        if a in used and b in used:
            axis = p[b] - p[a]
            side = np.array([-axis[1], axis[0]]) / max(float(np.linalg.norm(axis)), 1e-6)
            mid = (p[a] + p[b]) / 2
            extra += [mid + side * LIMB_SIDE * s, mid - side * LIMB_SIDE * s]
    return np.vstack([p[used]] + ([np.array(extra)] if extra else []))


Refine = Callable[[np.ndarray], np.ndarray | None]


def match_points(old: np.ndarray, new: np.ndarray, size: tuple[int, int], cloth_type: str,
                 config: LiveConfig = LiveConfig(), refine: Refine | None = None
                 ) -> tuple[tuple[np.ndarray, np.ndarray] | None, str]:
    """
    Decide whether new can be reached from old; return the mesh's matched points.

    old, new: (33, 3) landmarks; size: (height, width) of the new frame; refine: the
    landmarks' global move (2x3, new -> try-on frame) -> a better one or None.
    Returns ((N, 2) new-frame points, (N, 2) try-on-frame points), 'live') or (None, the
    reason the warp is not believable).
    """
    matched, status = _match(old, new, size, cloth_type, config, refine)
    return (None if matched is None else matched[:2]), status


def _match(old: np.ndarray, new: np.ndarray, size: tuple[int, int], cloth_type: str,
           config: LiveConfig, refine: Refine | None
           ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, bool] | None, str]:
    """match_points, plus the global move (2x3) and whether every point moved by it."""
    if cloth_type not in KEY_POINTS:
        raise ValueError(f'unknown cloth_type {cloth_type!r}; valid: {", ".join(KEY_POINTS)}')
    old, new = check_landmarks(old), check_landmarks(new)
    if any(new[i, 2] < config.min_visibility for i in KEY_POINTS[cloth_type]):
        return None, STATUS_TURNED
    h, w = size
    both = [i for i in WARP_POINTS[cloth_type]  # seen in both frames, inside this one
            if min(old[i, 2], new[i, 2]) >= config.min_visibility
            and 0 <= new[i, 0] < w and 0 <= new[i, 1] < h]
    if len(both) < 3:
        return None, STATUS_TURNED
    src, dst = _mesh_points(new, both), _mesh_points(old, both)
    sim, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
    if sim is None:
        return None, STATUS_TOO_FAR
    s_old = body_scale(old)
    if refine is not None:
        better = refine(sim)
        if better is not None and np.max(np.linalg.norm(
                _apply(better, src) - _apply(sim, src), axis=1)) <= MAX_DISAGREEMENT * s_old:
            sim = better
    scale = math.sqrt(abs(np.linalg.det(sim[:, :2])))  # new -> old: 1/scale is the growth
    angle = math.degrees(math.atan2(sim[1, 0] - sim[0, 1], sim[0, 0] + sim[1, 1]))
    if not 1.0 / config.max_scale <= scale <= config.max_scale or \
            abs(angle) > config.max_rotation:
        return None, STATUS_TOO_FAR
    rigid = _apply(sim, src)
    residual = dst - rigid
    norm = np.linalg.norm(residual, axis=1)
    if np.max(norm) > config.max_displacement * s_old:
        return None, STATUS_TOO_FAR
    if KEY_POINTS[cloth_type][0] == L_SHOULDER:
        width_new = np.linalg.norm(new[L_SHOULDER, :2] - new[R_SHOULDER, :2]) * scale
        width_old = np.linalg.norm(old[L_SHOULDER, :2] - old[R_SHOULDER, :2])
        if width_new < config.min_width_ratio * width_old:
            return None, STATUS_TURNED
    # noise up to the tolerance, a non-rigid move from twice it, a ramp between
    weight = np.clip(norm / (RIGID_TOLERANCE * s_old) - 1.0, 0.0, 1.0)[:, None]
    anchors = _anchors(w, h)
    src_all = np.vstack([src, anchors])
    dst_all = np.vstack([rigid + weight * residual, _apply(sim, anchors)])
    return (src_all, dst_all, sim, not weight.any()), STATUS_LIVE


def _apply(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ affine[:, :2].T + affine[:, 2]


def plan_warp(old: np.ndarray, new: np.ndarray, size: tuple[int, int], cloth_type: str,
              config: LiveConfig = LiveConfig(),
              box: tuple[int, int, int, int] | None = None,
              refine: Refine | None = None) -> tuple[np.ndarray | None, str]:
    """
    Build the map new frame -> try-on frame, or say why the warp is not believable.

    box: (x0, y0, x1, y1) part of the new frame to map (default: all of it); refine: see
    :func:`match_points`. Returns (box-sized HxWx2 float32 try-on-frame coordinates for
    cv2.remap, 'live') or (None, the reason: 'turned away' or 'moved too far').
    """
    planned, status = _plan(old, new, size, cloth_type, config, refine)
    if planned is None:
        return None, status
    return planned.sample(box or (0, 0, size[1], size[0]))[0], status


def _plan(old: np.ndarray, new: np.ndarray, size: tuple[int, int], cloth_type: str,
          config: LiveConfig, refine: Refine | None) -> tuple[WarpMap | None, str]:
    """plan_warp's map, before it is sampled on a box."""
    matched, status = _match(old, new, size, cloth_type, config, refine)
    if matched is None:
        return None, status
    src_all, dst_all, sim, rigid = matched
    if rigid:
        return WarpMap(sim, None, size), STATUS_LIVE
    tri = Delaunay(src_all)
    if _folded(tri, dst_all):
        return None, STATUS_TOO_FAR
    mesh = LinearNDInterpolator(tri, dst_all, fill_value=-1.0)
    return WarpMap.from_mesh(mesh, sim, size), STATUS_LIVE


def _check_pair(rgb: np.ndarray, mask: np.ndarray | None, what: str) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f'{what} must be HxWx3 uint8 RGB, got {rgb.shape} {rgb.dtype}')
    if mask is not None and (mask.shape != rgb.shape[:2] or mask.dtype != np.uint8):
        raise ValueError(f'{what} mask must be HxW uint8 of the image size {rgb.shape[:2]}, '
                         f'got {mask.shape} {mask.dtype}')


@dataclass
class _Posed:
    """The last posed frame the garment was put on: what a frame between is moved from."""

    small: np.ndarray     # small_gray of the frame
    region: np.ndarray    # uint8 at small's size: its garment region, for registration
    mask: np.ndarray      # HxW uint8, its agnostic mask
    corners: np.ndarray   # (4, 2) float64, the corners of the mask's bounding box
    scale: float          # its body scale
    warp: WarpMap         # its pixels -> try-on frame
    move: np.ndarray      # 2x3 to the last frame between (the next registration's guess)


def _region(mask: np.ndarray, small_shape: tuple[int, int], scale: float) -> np.ndarray:
    """Return mask (HxW uint8) at small_shape, shrunk by REGISTER_ERODE body scales (uint8)."""
    size = max(1, round(REGISTER_ERODE * scale * REGISTER_SCALE))
    region = cv2.resize(mask, small_shape[::-1], interpolation=cv2.INTER_AREA) > 127
    return cv2.erode(region.astype(np.uint8), np.ones((size, size), np.uint8))


class LiveFollower:
    """The garment of the latest try-on, followed onto each new frame (not thread-safe)."""

    def __init__(self, config: LiveConfig = LiveConfig()) -> None:
        """Start without a try-on: frames pass through with status 'no result'."""
        self.config = config
        self._ref: tuple[np.ndarray, np.ndarray, str] | None = None  # layer, landmarks, type
        self._template: tuple[np.ndarray, np.ndarray] | None = None
        self._posed: _Posed | None = None
        self._status: str | None = None  # of the last posed frame (None: none yet)

    @property
    def has_result(self) -> bool:
        """Whether a try-on is being followed."""
        return self._ref is not None

    def set_result(self, result: np.ndarray, result_mask: np.ndarray,
                   landmarks: np.ndarray, cloth_type: str,
                   frame_small: np.ndarray | None = None) -> None:
        """
        Follow a new try-on.

        result: HxWx3 uint8 RGB at the try-on frame's size; result_mask: HxW uint8 (>127 is
        the garment layer); landmarks: (33, 3) of the try-on frame; frame_small:
        :func:`small_gray` of the camera frame the try-on was made from (the global move is
        then registered on its clothing; None: landmarks only).
        """
        _check_pair(result, result_mask, 'result')
        if cloth_type not in KEY_POINTS:
            raise ValueError(f'unknown cloth_type {cloth_type!r}; valid: '
                             f'{", ".join(KEY_POINTS)}')
        lms = check_landmarks(landmarks).copy()
        self.clear()
        self._ref = (np.dstack([result, result_mask]), lms, cloth_type)
        if frame_small is not None:
            region = _region(result_mask, frame_small.shape, body_scale(lms))
            if region.any():
                self._template = (frame_small.copy(), region)

    def clear(self) -> None:
        """Stop following (frames pass through)."""
        self._ref = self._template = self._posed = self._status = None

    def follow(self, frame: np.ndarray, mask: np.ndarray, landmarks: np.ndarray | None,
               frame_small: np.ndarray | None = None) -> LiveFrame:
        """Composite the garment into a posed ``frame`` (HxWx3 uint8) or say why not."""
        _check_pair(frame, mask, 'frame')
        self._posed = None
        none = np.zeros(mask.shape, bool)
        if self._ref is None:
            return LiveFrame(frame, STATUS_NO_RESULT, none)
        if landmarks is None or not mask.any():
            self._status = STATUS_NO_PERSON
            return LiveFrame(frame, STATUS_NO_PERSON, none)
        _, old, cloth_type = self._ref
        small = small_gray(frame) if frame_small is None else frame_small
        planned, self._status = _plan(old, landmarks, mask.shape, cloth_type, self.config,
                                      self._refine(small, frame.shape[:2]))
        if planned is None:
            return LiveFrame(frame, self._status, none)
        scale = body_scale(check_landmarks(landmarks))
        x0, y0, x1, y1 = garment_box(mask, 0)
        corners = np.array([(x0, y0), (x1, y0), (x0, y1), (x1, y1)], np.float64)
        self._posed = _Posed(small, _region(mask, small.shape, scale), mask, corners, scale,
                             planned, np.eye(2, 3))
        return self._composite(frame, mask, scale, planned)

    def follow_between(self, frame: np.ndarray,
                       frame_small: np.ndarray | None = None) -> LiveFrame | None:
        """
        Composite the garment into a frame that was not posed, by its move since the last.

        The frame (HxWx3 uint8) is registered on the last posed frame (its garment region;
        ``frame_small``: its :func:`small_gray`, if made already) and the posed frame's map
        and mask are moved with it. Returns None when this frame must be posed instead: no
        frame posed since the try-on, no registration (it did not converge, or matched
        poorly: the shopper moved in another way or left) or a move of more than
        BETWEEN_MAX_MOVE body scales. After a posed frame that was not live, returns the
        raw frame and that frame's status.
        """
        _check_pair(frame, None, 'frame')
        none = np.zeros(frame.shape[:2], bool)
        if self._ref is None:
            return LiveFrame(frame, STATUS_NO_RESULT, none)
        posed = self._posed
        if posed is None:
            return None if self._status is None else LiveFrame(frame, self._status, none)
        small = small_gray(frame) if frame_small is None else frame_small
        size = frame.shape[:2]
        reach = BETWEEN_MAX_MOVE * posed.scale
        move = register(posed.small, posed.region, small, posed.move, size,
                        BETWEEN_CORRELATION, reach)
        if move is None:
            return None
        corners = _apply(move, posed.corners)
        if np.max(np.linalg.norm(corners - posed.corners, axis=1)) > \
                BETWEEN_MAX_MOVE * posed.scale:
            return None
        posed.move = move
        mask = moved_mask(posed.mask, move, corners)
        scale = posed.scale * math.sqrt(abs(np.linalg.det(move[:, :2])))
        return self._composite(frame, mask, scale,
                               posed.warp.after(cv2.invertAffineTransform(move)))

    def _composite(self, frame: np.ndarray, mask: np.ndarray, scale: float,
                   planned: WarpMap) -> LiveFrame:
        feather, band = self.config.feather * scale, GARMENT_BAND * scale
        box = garment_box(mask, int(math.ceil(feather + band)) + 1)
        coords, steady = planned.sample(box)
        image, warped, region = composite(frame, mask, self._ref[0], coords, feather, box,
                                          band, steady)
        return LiveFrame(image, STATUS_LIVE, region, warped)

    def _refine(self, small: np.ndarray, size: tuple[int, int]) -> Refine | None:
        """Return the registration of a frame against the try-on's (None: not known)."""
        if self._template is None:
            return None
        template, region = self._template
        reach = MAX_DISAGREEMENT * body_scale(self._ref[1])  # as far as it may be used

        def refine(sim: np.ndarray) -> np.ndarray | None:
            found = register(template, region, small, cv2.invertAffineTransform(sim), size,
                             reach=reach)
            return None if found is None else cv2.invertAffineTransform(found)
        return refine
