"""Live follow warp (vton_ros.media.live_warp) on synthetic motion with known truth."""

import cv2
import numpy as np
import pytest
from skimage.transform import PiecewiseAffineTransform

from vton_ros.media import live_warp
from vton_ros.media.live_warp import LiveConfig, LiveFollower

H, W = 480, 640


def figure_landmarks() -> np.ndarray:
    """(33, 3) landmarks of an upright figure facing the camera, all visible."""
    lms = np.zeros((33, 3))
    lms[:, 2] = 0.99
    points = {0: (320, 90), 2: (330, 80), 5: (310, 80), 7: (345, 85), 8: (295, 85),
              9: (328, 108), 10: (312, 108),
              11: (380, 160), 12: (260, 160), 13: (405, 240), 14: (235, 240),
              15: (415, 315), 16: (225, 315), 17: (420, 330), 18: (220, 330),
              19: (418, 335), 20: (222, 335), 21: (410, 328), 22: (230, 328),
              23: (360, 320), 24: (280, 320), 25: (362, 400), 26: (278, 400),
              27: (362, 470), 28: (278, 470), 29: (366, 478), 30: (274, 478),
              31: (372, 478), 32: (268, 478)}
    for i, (x, y) in points.items():
        lms[i, :2] = (x, y)
    return lms


def upper_mask(lms: np.ndarray) -> np.ndarray:
    """Torso hull plus arm capsules: HxW uint8 0/255 (like the pose masker's upper mask)."""
    mask = np.zeros((H, W), np.uint8)
    torso = lms[[11, 12, 24, 23], :2] + np.array([[15, -12], [-15, -12], [-12, 25], [12, 25]])
    cv2.fillConvexPoly(mask, np.round(torso).astype(np.int32), 255)
    for a, b in ((11, 13), (13, 15), (12, 14), (14, 16)):
        p, q = np.round(lms[a, :2]).astype(int), np.round(lms[b, :2]).astype(int)
        cv2.line(mask, tuple(int(v) for v in p), tuple(int(v) for v in q), 255, 44)
        cv2.circle(mask, tuple(int(v) for v in q), 22, 255, -1)
    return mask


def scene(lms: np.ndarray) -> np.ndarray:
    """Draw a textured background and a shopper in a plain blue shirt."""
    yy, xx = np.mgrid[0:H, 0:W]
    bg = np.stack([120 + 60 * np.sin(xx / 37.0), 140 + 50 * np.cos(yy / 29.0),
                   100 + 40 * np.sin((xx + yy) / 51.0)], -1)
    img = bg.clip(0, 255).astype(np.uint8)
    cv2.circle(img, tuple(int(v) for v in lms[0, :2]), 45, (225, 180, 150), -1)
    img[cv2.erode(upper_mask(lms), np.ones((9, 9), np.uint8)) > 0] = (40, 60, 170)
    return img


def tried_on(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Make the 'try-on result': a striped red garment with texture inside the mask."""
    yy, xx = np.mgrid[0:H, 0:W]
    cloth = np.stack([180 + 40 * np.sin(yy / 6.0), 40 + 30 * np.sin(xx / 9.0),
                      50 + 20 * np.cos((xx - yy) / 7.0)], -1).clip(0, 255).astype(np.uint8)
    out = frame.copy()
    out[mask > 127] = cloth[mask > 127]
    return out


def moved(matrix: np.ndarray, image: np.ndarray, nearest: bool = False) -> np.ndarray:
    """Apply a 2x3 affine to an image (the truth of a rigid move)."""
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(image, matrix, (W, H), flags=flags, borderMode=cv2.BORDER_REFLECT)


def move_points(matrix: np.ndarray, lms: np.ndarray) -> np.ndarray:
    out = lms.copy()
    out[:, :2] = lms[:, :2] @ matrix[:, :2].T + matrix[:, 2]
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(a & b)) / max(1, np.count_nonzero(a | b))


@pytest.fixture(scope='module')
def reference():
    lms = figure_landmarks()
    frame = scene(lms)
    mask = upper_mask(lms)
    return lms, frame, mask, tried_on(frame, mask)


RIGID = [  # (dx as a fraction of the width, scale, rotation degrees)
    (0.15, 1.0, 0.0), (-0.15, 1.0, 0.0), (0.0, 0.85, 0.0), (0.0, 1.15, 0.0),
    (0.0, 1.0, 10.0), (0.0, 1.0, -10.0), (0.08, 1.1, 6.0), (-0.1, 0.9, -8.0)]


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
