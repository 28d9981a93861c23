"""
Live frames between posed ones: registered on the last posed frame, not posed (unit).

segmentation_node poses (mediapipe) only the frames due for a mask; a frame between is
registered on the last posed frame and takes that frame's map and mask, moved
(:meth:`vton_ros.media.live_warp.LiveFollower.follow_between`). Here the drawn figure in a
printed shirt is posed at one known move and followed, unposed, to the next.
"""

import cv2
from live_figures import (figure_landmarks, H, iou, move_points, moved, reference_scene,
                          shirt_scene, upper_mask, W)
import numpy as np
import pytest
from scipy.interpolate import LinearNDInterpolator
from vton_ros.media import live_warp
from vton_ros.media.live_composite import compose, moved_mask, WarpMap
from vton_ros.media.live_warp import LiveFollower
from vton_ros.media.registration import register, small_gray

CENTRE = (320.0, 240.0)
STEPS = [  # the posed frame's move from the try-on frame, then the next frame's move on
    ((0.08, 1.0, 0.0), (24.0, 1.0, 0.0)), ((-0.1, 1.0, 0.0), (-24.0, 1.02, 1.5)),
    ((0.0, 1.1, 4.0), (10.0, 1.03, 2.0)), ((0.05, 0.9, -6.0), (-16.0, 0.97, -2.5))]


def affine(dx: float, scale: float, angle: float) -> np.ndarray:
    matrix = cv2.getRotationMatrix2D(CENTRE, angle, scale)
    matrix[0, 2] += dx
    return matrix


@pytest.fixture(scope='module')
def reference():
    return reference_scene(shirt_scene)


def posed_follower(reference, matrix: np.ndarray) -> LiveFollower:
    """Return a follower of the try-on whose last posed frame is the figure moved by matrix."""
    lms, frame, mask, result = reference
    follower = LiveFollower()
    follower.set_result(result, mask, lms, 'upper', small_gray(frame))
    new_lms = move_points(matrix, lms)
    assert follower.follow(moved(matrix, frame), upper_mask(new_lms), new_lms).live
    return follower


@pytest.mark.parametrize('case', range(len(STEPS)))
def test_a_frame_between_takes_the_posed_garment_moved(reference, case):
    lms, frame, mask, result = reference
    (fx, scale, angle), step = STEPS[case]
    first = affine(fx * W, scale, angle)
    follower = posed_follower(reference, first)
    total = compose(first, affine(*step))
    out = follower.follow_between(moved(total, frame))
    assert out is not None and out.live
    truth, truth_mask = moved(total, result), moved(total, mask, nearest=True) > 127
    err = np.abs(out.image.astype(np.float64) - truth.astype(np.float64))[truth_mask].mean()
    assert iou(out.garment, truth_mask) >= 0.95 and err <= 8.0, (iou(out.garment, truth_mask),
                                                                 err)
    # not the posed frame's garment where it was: it moved with her
    stale = follower.follow_between(moved(first, frame))  # the posed frame itself again
    assert stale is not None and stale.live
    still = np.abs(stale.image.astype(np.float64) - truth.astype(np.float64))[truth_mask]
    assert still.mean() > 2 * err
    far = cv2.dilate(truth_mask.astype(np.uint8), np.ones((81, 81), np.uint8)) == 0
    assert np.array_equal(out.image[far], moved(total, frame)[far])


def test_frames_between_follow_a_raised_arm_bent_on_the_posed_frame(reference):
    lms, frame, mask, result = reference
    raised = lms.copy()
    turn = cv2.getRotationMatrix2D(tuple(float(v) for v in lms[11, :2]), 50.0, 1.0)
    for i in (13, 15, 17, 19, 21):
        raised[i, :2] = turn[:, :2] @ lms[i, :2] + turn[:, 2]
    follower = LiveFollower()
    follower.set_result(result, mask, lms, 'upper', small_gray(frame))
    posed = shirt_scene(raised)
    at_posed = follower.follow(posed, upper_mask(raised), raised)
    assert at_posed.live
    step = affine(20.0, 1.0, 0.0)
    out = follower.follow_between(moved(step, posed))
    assert out is not None and out.live
    # the bent garment, moved by the step: the posed composite moved, up to resampling
    truth = moved(step, at_posed.warped_mask) > 127
    assert iou(out.warped_mask > 127, truth) > 0.97


def test_a_frame_between_is_posed_when_it_cannot_be_registered(reference):
    lms, frame, mask, result = reference
    follower = LiveFollower()
    follower.set_result(result, mask, lms, 'upper', small_gray(frame))
    assert follower.follow_between(frame) is None  # nothing posed since the try-on
    follower = posed_follower(reference, affine(0.0, 1.0, 0.0))
    room = np.full_like(frame, 128)
    assert follower.follow_between(room) is None  # she left: a flat frame does not register
    far = affine(0.6 * live_warp.body_scale(lms) / live_warp.BETWEEN_MAX_MOVE, 1.0, 0.0)
    assert follower.follow_between(moved(far, frame)) is None  # too far to trust: pose it
    assert follower.follow_between(moved(affine(12.0, 1.0, 0.0), frame)).live
    other = shirt_scene(figure_landmarks())[:-8]
    with pytest.raises(ValueError):
        follower.follow_between(other[..., 0])


def test_after_a_posed_frame_that_was_not_live_frames_between_keep_its_status(reference):
    lms, frame, mask, result = reference
    follower = posed_follower(reference, affine(0.0, 1.0, 0.0))
    turned = lms.copy()
    turned[12, 2] = 0.1  # a shoulder out of sight: turned away
    assert follower.follow(frame, mask, turned).status == 'turned away'
    out = follower.follow_between(frame)
    assert out.status == 'turned away' and out.image is frame and not out.region.any()
    assert follower.follow(frame, mask, None).status == 'no person'
    assert follower.follow_between(frame).status == 'no person'
    follower.clear()
    assert follower.follow_between(frame).status == 'no result'


def test_the_search_reaches_a_move_ecc_alone_misses(reference):
    _, frame, mask, _ = reference
    region = (cv2.resize(mask, (W // 4, H // 4), interpolation=cv2.INTER_AREA) > 127)
    region = cv2.erode(region.astype(np.uint8), np.ones((3, 3), np.uint8))
    truth = affine(56.0, 1.0, 2.0)
    template, image = small_gray(frame), small_gray(moved(truth, frame))
    found = register(template, region, image, np.eye(2, 3), (H, W), 0.9, reach=80.0)
    assert found is not None
    corners = np.array([[200.0, 150.0], [440.0, 150.0], [320.0, 400.0]])
    err = np.linalg.norm(corners @ found[:, :2].T + found[:, 2]
                         - (corners @ truth[:, :2].T + truth[:, 2]), axis=1)
    assert err.max() < 1.5
    assert register(template, region, image, np.eye(2, 3), (H, W), 0.9) is None


def test_a_map_after_a_move_samples_the_posed_map_where_the_move_takes_each_pixel():
    rng = np.random.default_rng(3)
    points = np.vstack([rng.uniform(-100, 740, (40, 2)),
                        [(-200, -200), (900, -200), (-200, 700), (900, 700)]])
    sim = np.array([[1.02, 0.03, -12.0], [-0.02, 0.99, 7.0]])
    bent = points @ sim[:, :2].T + sim[:, 2] + rng.normal(0, 6, points.shape)
    posed = WarpMap.from_mesh(LinearNDInterpolator(points, bent), sim, (H, W))
    back = cv2.invertAffineTransform(affine(18.0, 1.04, 3.0))
    box = (100, 60, 420, 400)
    coords, steady = posed.after(back).sample(box)
    xs, ys = np.meshgrid(np.arange(100, 420, dtype=np.float64), np.arange(60, 400))
    at = np.dstack([xs, ys]) @ back[:, :2].T + back[:, 2]  # each pixel in the posed frame
    whole, _ = posed.sample((0, 0, W, H))
    expect = cv2.remap(whole, at[..., 0].astype(np.float32), at[..., 1].astype(np.float32),
                       cv2.INTER_LINEAR)
    inside = (at[..., 0] >= 1) & (at[..., 0] < W - 2) & (at[..., 1] >= 1) & (at[..., 1] < H - 2)
    # a bilinear map sampled directly, against a bilinear resampling of it: 0.2 px apart
    assert np.abs(coords - expect)[inside].max() < 0.25
    assert np.abs(steady - (at @ sim[:, :2].T + sim[:, 2])).max() < 1e-2
    rigid = WarpMap(sim, None, (H, W)).after(back)
    coords, steady = rigid.sample(box)
    assert coords is steady and np.abs(steady - (at @ sim[:, :2].T + sim[:, 2])).max() < 1e-2


def test_a_moved_mask_is_the_whole_frame_warp_cut_to_its_box():
    mask = upper_mask(figure_landmarks())
    move = affine(-30.0, 1.05, 4.0)
    x, y, w, h = cv2.boundingRect(mask)
    box = np.array([(x, y), (x + w, y), (x, y + h), (x + w, y + h)], np.float64)
    corners = box @ move[:, :2].T + move[:, 2]
    whole = cv2.warpAffine(mask, move, (W, H), flags=cv2.INTER_LINEAR)
    assert np.abs(moved_mask(mask, move, corners).astype(int) - whole).max() <= 1
