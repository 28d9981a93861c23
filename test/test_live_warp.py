"""Live follow warp (vton_ros.media.live_warp) on synthetic motion with known truth."""

import cv2
from live_figures import H, iou, move_points, moved, reference_scene, RIGID, scene, \
    upper_mask, W
import numpy as np
import pytest
from skimage.transform import PiecewiseAffineTransform
from vton_ros.media import live_warp
from vton_ros.media.live_warp import LiveConfig, LiveFollower


@pytest.fixture(scope='module')
def reference():
    return reference_scene()


@pytest.mark.parametrize('dx,scale,angle', RIGID)
def test_rigid_motion_matches_the_moved_result(reference, dx, scale, angle):
    lms, frame, mask, result = reference
    centre = tuple(float(v) for v in lms[[11, 12, 23, 24], :2].mean(0))
    matrix = cv2.getRotationMatrix2D(centre, angle, scale)
    matrix[0, 2] += dx * W
    new_lms = move_points(matrix, lms)
    new_frame, new_mask = moved(matrix, frame), moved(matrix, mask, nearest=True)
    truth, truth_mask = moved(matrix, result), moved(matrix, mask, nearest=True) > 127

    follower = LiveFollower()
    follower.set_result(result, mask, lms, 'upper')
    out = follower.follow(new_frame, new_mask, new_lms)

    assert out.status == 'live' and out.live
    assert iou(out.warped_mask > 127, truth_mask) >= 0.9
    assert iou(out.garment, truth_mask) >= 0.9
    err = np.abs(out.image.astype(np.float64) - truth.astype(np.float64))
    assert err[truth_mask].mean() <= 8.0
    # the garment really moved: the raw frame differs there, the outside is untouched
    assert np.abs(new_frame.astype(int) - truth.astype(int))[truth_mask].mean() > 30.0
    far = cv2.dilate(new_mask, np.ones((31, 31), np.uint8)) == 0
    assert np.array_equal(out.image[far], new_frame[far])


def test_raised_arm_follows_the_elbow_and_wrist(reference):
    lms, frame, mask, result = reference
    new_lms = lms.copy()
    shoulder = lms[11, :2]
    turn = cv2.getRotationMatrix2D(tuple(float(v) for v in shoulder), 50.0, 1.0)
    for i in (13, 15, 17, 19, 21):  # left arm swings outwards and up
        new_lms[i, :2] = turn[:, :2] @ lms[i, :2] + turn[:, 2]
    new_mask = upper_mask(new_lms)
    follower = LiveFollower()
    follower.set_result(result, mask, lms, 'upper')
    out = follower.follow(scene(new_lms), new_mask, new_lms)
    assert out.live
    # the old arm's pixels beside the torso stretch into the armpit (outside the new mask,
    # so not shown); inside the new mask the garment covers the truth
    assert iou(out.garment, new_mask > 127) >= 0.9
    # the forearm's garment went with the wrist: red stripes around the new wrist
    x, y = np.round((new_lms[13, :2] + new_lms[15, :2]) / 2).astype(int)
    patch = out.image[y - 5:y + 5, x - 5:x + 5].reshape(-1, 3).astype(int)
    assert patch[:, 0].mean() > 120 and patch[:, 2].mean() < 100


def test_without_a_result_frames_pass_through(reference):
    lms, frame, mask, _ = reference
    out = LiveFollower().follow(frame, mask, lms)
    assert out.status == 'no result' and out.image is frame and not out.region.any()


@pytest.mark.parametrize('change,status', [
    ('left', 'no person'), ('empty mask', 'no person'), ('shoulders hidden', 'turned away'),
    ('side on', 'turned away'), ('wrist flung', 'moved too far'),
    ('too close', 'moved too far'), ('tilted', 'moved too far')])
def test_unbelievable_warps_are_refused(reference, change, status):
    lms, frame, mask, result = reference
    new_lms, new_mask = lms.copy(), mask
    centre = tuple(float(v) for v in lms[11:13, :2].mean(0))
    if change == 'left':
        new_lms = None
    elif change == 'empty mask':
        new_mask = np.zeros_like(mask)
    elif change == 'shoulders hidden':
        new_lms[[11, 12], 2] = 0.1
    elif change == 'side on':  # shoulders seen edge-on: 0.4 of their width
        new_lms[11, 0] = centre[0] + 0.2 * (lms[11, 0] - lms[12, 0])
        new_lms[12, 0] = centre[0] - 0.2 * (lms[11, 0] - lms[12, 0])
    elif change == 'wrist flung':
        new_lms[15, :2] += (150, -150)  # still inside the frame
    elif change == 'too close':
        new_lms = move_points(cv2.getRotationMatrix2D(centre, 0.0, 1.6), lms)
    elif change == 'tilted':
        new_lms = move_points(cv2.getRotationMatrix2D(centre, 45.0, 1.0), lms)
    follower = LiveFollower()
    follower.set_result(result, mask, lms, 'upper')
    out = follower.follow(frame, new_mask, new_lms)
    assert out.status == status and not out.live
    assert out.image is frame


def test_bad_inputs_say_what_is_wrong(reference):
    lms, frame, mask, result = reference
    follower = LiveFollower()
    with pytest.raises(ValueError, match='cloth_type'):
        follower.set_result(result, mask, lms, 'hat')
    with pytest.raises(ValueError, match='33, 3'):
        follower.set_result(result, mask, lms[:20], 'upper')
    with pytest.raises(ValueError, match='mask'):
        follower.set_result(result, mask[:10], lms, 'upper')
    with pytest.raises(ValueError, match='max_scale'):
        LiveConfig(max_scale=0.5)
    follower.set_result(result, mask, lms, 'upper')
    with pytest.raises(ValueError, match='HxWx3'):
        follower.follow(frame[..., 0], mask, lms)
    follower.clear()
    assert not follower.has_result


def test_plan_warp_identity_is_the_pixel_grid(reference):
    lms = reference[0]
    coords, status = live_warp.plan_warp(lms, lms, (H, W), 'upper')
    assert status == 'live'
    yy, xx = np.mgrid[0:H, 0:W]
    assert np.abs(coords[..., 0] - xx).max() < 1e-2 and np.abs(coords[..., 1] - yy).max() < 1e-2


def test_mesh_map_is_scikit_images_piecewise_affine(reference):
    lms = reference[0]
    new_lms = lms.copy()
    new_lms[[13, 15], :2] += ((20, -30), (45, -60))  # the left arm half raised
    new_lms[:, 0] += 25
    coords, status = live_warp.plan_warp(lms, new_lms, (H, W), 'upper')
    (src, dst), _ = live_warp.match_points(lms, new_lms, (H, W), 'upper')
    assert status == 'live'
    if hasattr(PiecewiseAffineTransform, 'from_estimate'):
        tform = PiecewiseAffineTransform.from_estimate(src, dst)
    else:
        tform = PiecewiseAffineTransform()
        tform.estimate(src, dst)
    yy, xx = np.mgrid[0:H:8, 0:W:8]
    expect = tform(np.column_stack([xx.ravel(), yy.ravel()])).reshape(*xx.shape, 2)
    got = coords[0:H:8, 0:W:8]
    # one affine per triangle; the coarse grid blurs it only across triangle edges
    err = np.linalg.norm(got - expect, axis=-1)
    assert np.median(err) < 0.05 and np.percentile(err, 99) < 2.0
