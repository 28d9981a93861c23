"""
Live follow through real ROS processes: segmentation_node publishes tryon/live.

The camera replays a folder of frames in which the astronaut moves sideways by known steps
(and leaves once); a try-on from one frame must then follow her on every later frame.
"""

import threading

import cv2
from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from rosutil import HANG_GUARD, wait_until
from sensor_msgs.msg import CompressedImage, Image
from stack import R, System
from std_msgs.msg import String
from vton_interfaces.action import TryOn
from vton_ros.media import samples
from vton_ros.nodes import image_conv
from vton_ros.nodes.common import LATCHED_QOS

pytestmark = pytest.mark.stack  # node processes: not in make check

SIZE = (320, 240)
SHIFTS = (0, 12, 24, 36, 24, 12)  # px to the right, one frame each, then an empty room


def shifted(base: np.ndarray, dx: int) -> np.ndarray:
    matrix = np.float32([[1, 0, dx], [0, 1, 0]])
    return cv2.warpAffine(base, matrix, SIZE, borderMode=cv2.BORDER_REPLICATE)


@pytest.fixture(scope='module')
def replay(tmp_path_factory):
    folder = tmp_path_factory.mktemp('replay')
    base = cv2.resize(samples.portrait('astronaut')[:384], SIZE, interpolation=cv2.INTER_AREA)
    frames = [shifted(base, dx) for dx in SHIFTS]
    room = np.full_like(base, 128)
    for i, rgb in enumerate(frames + [room]):
        cv2.imwrite(str(folder / f'f{i:02d}.png'), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return folder, frames


@pytest.fixture(scope='module')
def system(tmp_path_factory, tiny_weights, replay):
    folder, _ = replay
    sys_ = System(tmp_path_factory.mktemp('live'), tiny_weights,
                  server={'catvton.repaint': True}, nodes={
        'camera_node': {'camera.source': str(folder), 'camera.mirror': False,
                        'camera.width': SIZE[0], 'camera.height': SIZE[1]},
        # every frame's mask is published (frames between masks would feed tryon/live only;
        # the second test makes some, registered on the last posed frame)
        'segmentation_node': {'live.enabled': True, 'segmentation.max_rate': 0.0}})
    yield sys_
    codes = sys_.close()
    assert codes == [0, 0, 0], [p.log()[-2000:] for p in sys_.procs]


class LiveWatch:
    """The client's view of tryon/live, its compressed twin and its status."""

    def __init__(self, node):
        self.lock = threading.Lock()
        self.live, self.compressed, self.status = [], [], []
        self.between = {}  # segmentation_node's counts of frames between masks, by how
        node.create_subscription(Image, 'tryon/live', self._keep(self.live),
                                 qos_profile_sensor_data)
        node.create_subscription(CompressedImage, 'tryon/live/compressed',
                                 self._keep(self.compressed), qos_profile_sensor_data)
        node.create_subscription(String, 'tryon/live/status',
                                 lambda m: self._keep(self.status)(m.data), LATCHED_QOS)
        node.create_subscription(DiagnosticArray, '/diagnostics', self._diag, 50)

    def _diag(self, msg):
        for status in msg.status:
            if 'segmentation_node' in status.name:
                with self.lock:
                    self.between.update((v.key[len('live_between_'):], int(v.value))
                                        for v in status.values
                                        if v.key.startswith('live_between_'))

    def _keep(self, into):
        def keep(msg):
            with self.lock:
                into.append(msg)
        return keep


def _stamp(header):
    return (header.stamp.sec, header.stamp.nanosec)


def test_the_try_on_follows_the_moving_shopper(system, replay):
    _, frames = replay
    watch = LiveWatch(system.client.node)
    wait_until(lambda: watch.status, HANG_GUARD, 'a tryon/live/status message')
    assert watch.status[0] == 'no result'

    def person_goal():  # the camera shows an empty room one frame in seven
        result = system.send(TryOn.Goal(garment_id='red_tshirt')).result
        return result if result.error_code == R.SUCCESS else None
    result = wait_until(person_goal, HANG_GUARD * 3, 'a try-on from a frame with a person')
    tried = image_conv.to_rgb(result.image)
    tried_mask = image_conv.to_mono(result.mask) > 127
    # repaint: outside its mask the try-on is the frame it was made from
    dx0 = SHIFTS[int(np.argmin([np.abs(tried.astype(int) - f)[~tried_mask].mean()
                                for f in frames]))]

    def moved_frames():  # composites of frames where she stands elsewhere than at the try-on
        with watch.lock:
            later = [m for m in watch.live if _stamp(m.header) > _stamp(result.image.header)]
        seen = {}
        for msg in later:
            frame = system.frame(msg.header)
            if frame is not None:
                errs = [np.abs(frame.astype(int) - f).mean() for f in frames]
                dx = SHIFTS[int(np.argmin(errs))]
                if abs(dx - dx0) >= 12:
                    seen[dx] = (msg, frame)
        return seen if len(seen) >= 2 else None

    seen = wait_until(moved_frames, HANG_GUARD * 2, lambda: f'live composites of 2 other '
                      f'positions (status {watch.status}, {len(watch.live)} live frames)')
    masks = {_stamp(m.header): image_conv.to_mono(m) for m in system.masks}
    for dx, (msg, frame) in seen.items():
        out = image_conv.to_rgb(msg)
        mask = masks[_stamp(msg.header)] > 127
        assert mask.any()
        # outside the (feathered) mask, and the moved garment where it reaches past the mask,
        # the composite is the raw frame, pixel for pixel
        shown = mask | (shifted(tried_mask.astype(np.uint8), dx - dx0) > 0)
        far = cv2.dilate(shown.astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
        assert np.array_equal(out[far], frame[far])
        # inside it the try-on's garment, moved with her: closer to the shifted try-on than
        # to the try-on where it was, and not the raw frame
        truth = shifted(tried, dx - dx0)
        inner = mask & (shifted(tried_mask.astype(np.uint8), dx - dx0) > 0)
        inner = cv2.erode(inner.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        follow = np.abs(out.astype(int) - truth)[inner].mean()
        still = np.abs(out.astype(int) - tried)[inner].mean()
        raw_err = np.abs(out.astype(int) - frame)[inner].mean()
        assert follow < still, (dx0, dx, follow, still)
        assert follow < 0.6 * raw_err, (dx0, dx, follow, raw_err)
    wait_until(lambda: 'no person' in watch.status, HANG_GUARD,
               lambda: f'status no person when the room is empty (saw {watch.status})')
    assert 'live' in watch.status
    wait_until(lambda: watch.compressed, HANG_GUARD, 'a tryon/live/compressed image')
    assert watch.compressed[0].format.startswith('rgb8; jpeg')


def test_frames_between_masks_are_registered_onto_the_last_posed_one(system, replay):
    # while a try-on is followed, frames are taken at live.max_rate (15) for tryon/live;
    # only those due at segmentation.max_rate are posed and publish agnostic_mask and
    # mask_overlay; the frames between are registered on the last posed frame and take
    # its garment, moved (live.between register)
    _, frames = replay
    params = system.client.node.create_client(SetParameters,
                                              '/segmentation_node/set_parameters')
    request = SetParameters.Request(parameters=[
        Parameter('segmentation.max_rate', value=0.25).to_parameter_msg()])
    assert system.client.call(params, request).results[0].successful
    watch = LiveWatch(system.client.node)

    def person_goal():
        result = system.send(TryOn.Goal(garment_id='red_tshirt')).result
        return result if result.error_code == R.SUCCESS else None
    result = wait_until(person_goal, HANG_GUARD * 3, 'a try-on from a frame with a person')
    tried = image_conv.to_rgb(result.image)
    tried_mask = (image_conv.to_mono(result.mask) > 127).astype(np.uint8)
    dx0 = SHIFTS[int(np.argmin([np.abs(tried.astype(int) - f)[tried_mask == 0].mean()
                                for f in frames]))]
    start = _stamp(system.masks[-1].header)

    def moved_between():  # composites older than the newest mask, whose frame has no mask
        masked = [_stamp(m.header) for m in system.masks]
        with watch.lock:
            live = list(watch.live)
        seen = {}
        for msg in live:
            stamp = _stamp(msg.header)
            frame = system.frame(msg.header)
            if start < stamp < masked[-1] and stamp not in set(masked) and frame is not None:
                dx = SHIFTS[int(np.argmin([np.abs(frame.astype(int) - f).mean()
                                           for f in frames]))]
                if dx != dx0:
                    seen[dx] = (msg, frame)
        return seen if len(seen) >= 2 else None
    seen = wait_until(moved_between, HANG_GUARD * 2, lambda: f'live composites between masks '
                      f'at 2 other positions ({len(watch.live)} live frames, '
                      f'{len(system.masks)} masks)')
    for dx, (msg, frame) in seen.items():
        out = image_conv.to_rgb(msg)
        moved = shifted(tried_mask, dx - dx0)
        # far outside the moved garment the composite is the raw frame, pixel for pixel
        far = cv2.dilate(moved, np.ones((31, 31), np.uint8)) == 0
        assert np.array_equal(out[far], frame[far])
        # inside it the try-on's garment, moved with her
        inner = cv2.erode(moved, np.ones((7, 7), np.uint8)) > 0
        follow = np.abs(out.astype(int) - shifted(tried, dx - dx0))[inner].mean()
        still = np.abs(out.astype(int) - tried)[inner].mean()
        raw_err = np.abs(out.astype(int) - frame)[inner].mean()
        assert follow < still, (dx0, dx, follow, still)
        assert follow < 0.6 * raw_err, (dx0, dx, follow, raw_err)
    # and segmentation_node registered frames between, not only posed them
    wait_until(lambda: watch.between.get('registered', 0) > 0, HANG_GUARD,
               lambda: f'diagnostics counting registered frames between masks ({watch.between})')
    # registered and posed frames come from two workers, yet tryon/live never goes back
    with watch.lock:
        stamps = [_stamp(m.header) for m in watch.live]
    assert stamps == sorted(set(stamps)), 'a composite older than one already shown'
