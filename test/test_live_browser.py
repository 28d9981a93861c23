"""
The mirror page's Live toggle in a real headless Chromium against the real stack.

The camera replays a shopper who walks sideways by known steps; after a try-on with Live on
the page shows tryon/live: the garment moves with her (the composite differs from the raw
frame inside her moved mask and matches it outside); Live off shows the still result.
"""

import cv2
import numpy as np
from pages import browser_or_skip, by_testid, errors, LivePage, page_image, run_to_end, \
    SHOP_IDS, tap, wait_for
import pytest
from vton_ros.media import samples

pytestmark = pytest.mark.stack  # node processes: not in make check

SIZE = (320, 240)
STEPS = (0, 20, 40, 60, 40, 20)  # the shopper's left edge, px right of LEFT, frame by frame
LEFT, WIDTH = 20, 180  # her picture's first column and width in the camera frame
BACKGROUND = (200, 200, 200)


def camera_frames() -> list[np.ndarray]:
    """Return the replay's frames (as the camera sends them: mirrored)."""
    rgb = samples.portrait('astronaut')
    side = rgb.shape[0] * 3 // 4
    left = (rgb.shape[1] - side) // 2
    person = cv2.resize(rgb[:, left:left + side], (WIDTH, SIZE[1]), interpolation=cv2.INTER_AREA)
    frames = []
    for step in STEPS:
        frame = np.full((SIZE[1], SIZE[0], 3), BACKGROUND, np.uint8)
        frame[:, LEFT + step:LEFT + step + WIDTH] = person
        frames.append(frame)
    return frames


@pytest.fixture(scope='module')
def stack(tmp_path_factory):
    browser_or_skip()
    stack = LivePage(tmp_path_factory.mktemp('live_page'), {
        f'{i}.png': frame for i, frame in enumerate(camera_frames())}, SIZE)
    yield stack
    stack.close()


def changed_columns(shown: np.ndarray, frames: list[np.ndarray]) -> tuple[int, np.ndarray]:
    """Match a composite to its raw frame; return the frame's index and where they differ."""
    shown = shown.astype(int)
    errs = [np.median(np.abs(shown - f).max(-1)) for f in frames]
    index = int(np.argmin(errs))
    diff = np.abs(cv2.GaussianBlur(shown.astype(np.float32), (5, 5), 0)
                  - cv2.GaussianBlur(frames[index].astype(np.float32), (5, 5), 0)).max(-1)
    return index, diff > 40


def test_live_on_the_garment_follows_the_moving_shopper(stack):
    driver = stack.driver
    driver.get(stack.url)
    toggle = by_testid(driver, 'live-toggle')
    wait_for(driver, 'return arguments[0].getAttribute("aria-pressed") === "true"', toggle)
    run_to_end(driver, tap(driver, SHOP_IDS[0]))
    wait_for(driver, 'return document.getElementById("app").dataset.live === "following"')
    frames = [f[:, ::-1] for f in camera_frames()]  # camera.mirror: the page shows them flipped
    seen = {}
    for _ in range(50 * len(STEPS)):  # the replay loops: every step shows up many times
        count = driver.execute_script('return window.mirrorStats.live')
        wait_for(driver, 'return window.mirrorStats.live > arguments[0]', count)
        index, changed = changed_columns(page_image(driver, 'livecomp'), frames)
        seen[STEPS[index]] = changed
        if len(seen) == 3:
            break
    assert len(seen) == 3, f'composites matched only the steps {sorted(seen)}'
    assert by_testid(driver, 'live-view').is_displayed()
    assert not by_testid(driver, 'result').is_displayed()
    centres = {}
    for step, changed in seen.items():
        # the garment is on her (inside her picture's columns, mirrored), and covers a real
        # part of the frame; everywhere else the composite is the raw frame
        assert 0.03 < changed.mean() < 0.5, (step, changed.mean())
        cols = np.nonzero(changed.any(0))[0]
        first, last = SIZE[0] - (LEFT + step + WIDTH), SIZE[0] - (LEFT + step)
        # margin: the segmenter's mask edge, the outward feather and the 5x5 blur of the
        # comparison (9 px seen once at the right edge); her picture is 180 px wide
        assert first - 12 <= cols.min() and cols.max() <= last + 12, (step, cols.min(),
                                                                      cols.max())
        centres[step] = np.nonzero(changed)[1].mean()
    # the garment moved with her: its centre shifts by her step (mirrored: to the left)
    steps = sorted(centres)
    for a, b in zip(steps, steps[1:]):
        assert abs((centres[a] - centres[b]) - (b - a)) <= 0.35 * (b - a) + 3, centres
    toggle.click()  # Live off: the still result again
    wait_for(driver, 'return document.getElementById("app").dataset.live === "off"')
    assert by_testid(driver, 'result').is_displayed()
    assert not by_testid(driver, 'live-view').is_displayed()
    assert toggle.get_attribute('aria-pressed') == 'false'
    assert not errors(driver)
