"""
live.rerender through real ROS processes and the real page (headless Chromium).

The camera replays a shopper who steps back and forth: her picture at full size for a few
seconds, then at 3/4 size (beyond segmentation_node's live.max_scale, so the warp says
'moved too far'). With Live on and live.rerender true the page tries the garment on again,
by itself, from the current frame: the next result on tryon/result is made from a frame of
the other size, not from the frozen frame of the first try-on.
"""

from pathlib import Path
import threading

import cv2
import numpy as np
from pages import browser_or_skip, by_testid, errors, LivePage, run_to_end, SHOP_IDS, tap, \
    wait_for
import pytest
from rosutil import HANG_GUARD, Spinner, wait_until
from sensor_msgs.msg import Image
from vton_ros.media import samples
from vton_ros.nodes import image_conv
from vton_ros.nodes.common import LATCHED_QOS

pytestmark = pytest.mark.stack  # node processes: not in make check

SIZE = (320, 240)
SCALES = (1.0, 0.75)  # her size in the two halves of the replay
FRAMES = 32  # frames of each half (8 s at camera.fps 4: the re-render, slow on a loaded
# machine, takes its frame before she steps back; at 3 s it once took the first size again)


def camera_frames() -> list[np.ndarray]:
    """Return one frame per scale: her picture bottom-centred on a plain wall."""
    rgb = samples.portrait('astronaut')
    side = rgb.shape[0] * 3 // 4
    left = (rgb.shape[1] - side) // 2
    frames = []
    for scale in SCALES:
        w, h = round(180 * scale), round(SIZE[1] * scale)
        person = cv2.resize(rgb[:, left:left + side], (w, h), interpolation=cv2.INTER_AREA)
        frame = np.full((SIZE[1], SIZE[0], 3), 200, np.uint8)
        x = (SIZE[0] - w) // 2
        frame[SIZE[1] - h:, x:x + w] = person
        frames.append(frame)
    return frames


class RerenderStack(LivePage):
    """The live page with live.rerender, and a client that keeps every tryon/result."""

    def __init__(self, tmp: Path) -> None:
        frames = {f'{half}_{i:02d}.png': frame for half, frame in enumerate(camera_frames())
                  for i in range(FRAMES)}
        super().__init__(tmp, frames, SIZE, segmentation={'live.max_scale': 1.15},
                         ui={'live.rerender': True})
        self.lock = threading.Lock()
        self.results: list = []
        self.spinner = Spinner('rerender_test', self.domain)
        self.spinner.node.create_subscription(Image, 'tryon/result', self._result, LATCHED_QOS)

    def _result(self, msg) -> None:
        with self.lock:
            self.results.append(image_conv.to_rgb(msg))

    def close(self) -> None:
        """Close the client, then the page and the nodes."""
        self.spinner.close()
        super().close()


@pytest.fixture(scope='module')
def stack(tmp_path_factory):
    browser_or_skip()
    stack = RerenderStack(tmp_path_factory.mktemp('rerender'))
    yield stack
    stack.close()


def scale_of(result: np.ndarray, frames: list[np.ndarray]) -> float:
    """Return the scale of the frame a try-on was made from (repaint: the wall is its own)."""
    wall = [f[:, ::-1] for f in frames]  # camera.mirror: the frames as the server got them
    errs = [np.median(np.abs(result.astype(int) - f).max(-1)) for f in wall]
    return SCALES[int(np.argmin(errs))]


def test_moved_too_far_the_page_renders_again_from_the_current_frame(stack):
    driver = stack.driver
    driver.get(stack.url)
    wait_for(driver, 'return arguments[0].getAttribute("aria-pressed") === "true"',
             by_testid(driver, 'live-toggle'))
    first = tap(driver, SHOP_IDS[0])
    run_to_end(driver, first)  # the one tap of this test
    wait_until(lambda: stack.results, HANG_GUARD, 'the first result on tryon/result')
    # she steps back or forth: 'moved too far'; the page renders again by itself
    wait_until(lambda: len(stack.results) >= 2, HANG_GUARD,
               lambda: f'a second try-on without a tap (page: {by_testid(driver, "status").text})')
    wait_for(driver, 'return window.mirrorStats.ends >= arguments[0]', first + 2)
    with stack.lock:
        made = [scale_of(r, camera_frames()) for r in stack.results]
    assert made[1] != made[0], made  # from the current frame, not the frozen one
    assert not errors(driver)
