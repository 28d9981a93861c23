"""
The mirror page in a real headless Chromium against the real stack.

camera_node replays a folder of portraits, segmentation_node makes pose masks, tryon_server
runs the demo model (models/demo) at 128x96, mirror_ui serves the page; selenium drives
Debian's chromium + chromium-driver. Without them the tests skip, saying how to install
them; with ``CI`` set they fail instead. ``VTON_UPDATE_SCREENSHOTS=1`` also writes the
portrait and landscape screenshots to docs/. The camera is landscape (320x240) with the
person off-centre, as most webcams see a shopper.
"""

import asyncio
import json
import os
from pathlib import Path
import re
import subprocess
import sys
import time

from aiohttp import ClientSession, WSMsgType
import cv2
import numpy as np
from pages import browser_or_skip, by_testid, CUT_CARDS, errors, page_image, run_to_end, \
    SERVER, SHOP, SHOP_IDS, state, status, STEPS, tap, URL, wait_for
import pytest
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rosutil import free_domain_id, HANG_GUARD, node_argv, Proc, ROOT, ros_env, Spinner, \
    stop_all, wait_until
from vton_ros.media import samples
from vton_ros.media.camera_source import fit
from vton_ros.ui import browser, sentences

pytestmark = pytest.mark.stack  # node processes: not in make check

THUMBS_LOADED = ("Array.from(document.querySelectorAll('.garment img'))"
                 '.every((i) => i.naturalWidth > 0)')
# Sum of a 16x12 copy of an image element's pixels (tells frames apart).
PIXELS = """((id) => { const img = document.getElementById(id);
if (!img.naturalWidth) { return null; }
const canvas = document.createElement('canvas'); canvas.width = 16; canvas.height = 12;
const ctx = canvas.getContext('2d'); ctx.drawImage(img, 0, 0, 16, 12);
return Array.from(ctx.getImageData(0, 0, 16, 12).data).join(','); })"""
# Visible controls a finger cannot hit: smaller than 48x48 CSS pixels.
SMALL_TARGETS = """return Array.from(document.querySelectorAll('button, .button, select, input'))
.filter((e) => e.offsetParent !== null && e.type !== 'file').map((e) => [e.id || e.className,
e.getBoundingClientRect()]).filter(([, r]) => r.width < 48 || r.height < 48)
.map(([name, r]) => `${name} ${r.width}x${r.height}`);"""
# Parts of the page that stick out past the screen's right edge (a long carousel must scroll).
OFF_SCREEN = """return ['stage', 'shelf', 'garments'].filter((id) =>
document.getElementById(id).getBoundingClientRect().right > window.innerWidth + 1);"""
# Visible controls that the banner (or the model label) covers.
COVERED = """const over = document.getElementById(arguments[0]).getBoundingClientRect();
return Array.from(document.querySelectorAll('button, .button, select, input[type=range]'))
.filter((e) => e.offsetParent !== null).filter((e) => { const r = e.getBoundingClientRect();
return r.left < over.right && over.left < r.right && r.top < over.bottom && over.top < r.bottom;
}).map((e) => e.id || e.className);"""
# The area (CSS px) of the picture an image element shows, after object-fit.
SHOWN_AREA = """const img = document.getElementById(arguments[0]);
const box = img.getBoundingClientRect(); const fit = getComputedStyle(img).objectFit;
const scale = (fit === 'cover' ? Math.max : Math.min)(box.width / img.naturalWidth,
box.height / img.naturalHeight);
return Math.min(box.width, img.naturalWidth * scale) * Math.min(box.height,
img.naturalHeight * scale);"""
TOUCH = 48  # CSS pixels: the smallest touch target
CAMERA_SIZE = (320, 240)  # camera.width, camera.height of the test stack: a landscape webcam
BACKGROUND = (200, 200, 200)  # the camera frames' backdrop around the person
PERSON_AT = (20, 200)  # columns of the person's picture in the (unmirrored) camera frame


def write_frames(tmp: Path) -> Path:
    """Write a camera folder of two landscape frames, a person off-centre in each."""
    frames = tmp / 'frames'
    frames.mkdir()
    width, height = CAMERA_SIZE
    for i, name in enumerate(samples.PORTRAITS):
        rgb = samples.portrait(name)
        side = rgb.shape[0] * 3 // 4  # the person's picture: 3:4
        left = (rgb.shape[1] - side) // 2
        person = cv2.resize(rgb[:, left:left + side], (PERSON_AT[1] - PERSON_AT[0], height),
                            interpolation=cv2.INTER_AREA)
        frame = np.full((height, width, 3), BACKGROUND, np.uint8)
        frame[:, PERSON_AT[0]:PERSON_AT[1]] = person
        cv2.imwrite(str(frames / f'{i}.png'), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return frames


class Stack:
    """The four nodes, a ROS client for server parameters, and the browser."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.env = ros_env(free_domain_id())
        frames = self.frames = write_frames(tmp)
        self.camera = Proc(node_argv('camera_node', {
            'camera.source': str(frames), 'camera.fps': 3.0, 'camera.width': CAMERA_SIZE[0],
            'camera.height': CAMERA_SIZE[1]}), self.env, tmp / 'camera.log')
        self.procs = [self.camera, Proc(node_argv('segmentation_node', {
            'segmentation.max_rate': 2.0, 'segmentation.device': 'cpu'}), self.env,
            tmp / 'segmentation.log')]
        self.server = self.start_server('server')
        self.ui, self.url = self.start_ui('ui')
        self.ui_node = 'mirror_ui'
        self.server.wait_for_log('model loaded', timeout=HANG_GUARD)
        self.client = Spinner('mirror_test_client', int(self.env['ROS_DOMAIN_ID']))
        self.driver = browser.chrome(1080, 1920)

    def start_server(self, name: str) -> Proc:
        """Start tryon_server on the demo model."""
        proc = Proc(node_argv('tryon_server', dict(SERVER, **{
            'garments.catalog_dir': str(SHOP)})), self.env, self.tmp / f'{name}.log')
        self.procs.append(proc)
        return proc

    def start_ui(self, name: str, extra: tuple = (), **settings) -> tuple[Proc, str]:
        """Start a mirror_ui (port 0: a free one); return it and its page URL.

        Its working, home and temporary folder is ``ui_home`` (no image may land there).
        """
        params = dict({'ui.port': 0, 'garments.catalog_dir': str(SHOP),
                       'ui.answer_timeout': HANG_GUARD,  # a loaded CI is slow
                       'ui.max_connections_per_address': 64},  # all browsers: 127.0.0.1
                      **settings)
        home = self.tmp / 'ui_home'
        home.mkdir(exist_ok=True)
        proc = Proc(node_argv('mirror_ui', params,
                              extra=['-r', f'__node:=mirror_{name}', *extra]),
                    dict(self.env, HOME=str(home), TMPDIR=str(home)),
                    self.tmp / f'mirror_{name}.log', cwd=home)
        self.procs.append(proc)
        return proc, URL.search(proc.wait_for_log('mirror page at', HANG_GUARD)).group(1)

    def set_server(self, name: str, value, node: str = 'tryon_server') -> None:
        """Set a parameter of tryon_server or another node (what `ros2 param set` does)."""
        kind = ParameterType.PARAMETER_INTEGER if isinstance(value, int) else \
            ParameterType.PARAMETER_DOUBLE
        field = 'integer_value' if isinstance(value, int) else 'double_value'
        service = self.client.node.create_client(SetParameters, f'{node}/set_parameters')
        assert service.wait_for_service(timeout_sec=HANG_GUARD)
        request = SetParameters.Request(parameters=[Parameter(
            name=name, value=ParameterValue(type=kind, **{field: value}))])
        response = self.client.call(service, request)
        assert response.results[0].successful, response.results[0].reason
        self.client.node.destroy_client(service)

    def close(self) -> None:
        """Quit the browser, stop the nodes (each must exit 0)."""
        self.driver.quit()
        self.client.close()
        stop_all(self.procs)


@pytest.fixture(scope='module')
def stack(tmp_path_factory):
    browser_or_skip()
    stack = Stack(tmp_path_factory.mktemp('mirror'))
    stack.driver.get(stack.url)  # every test finds the page loaded, whichever runs first
    wait_for(stack.driver, 'return window.mirrorStats && window.mirrorStats.frames > 0')
    yield stack
    stack.close()


def view_shot(driver) -> np.ndarray:
    """Return a screenshot of the page's picture area (what the shopper sees there)."""
    png = np.frombuffer(driver.get_screenshot_as_png(), np.uint8)
    box = driver.execute_script('const r = document.getElementById("view")'
                                '.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]')
    left, top, width, height = (round(v) for v in box)
    page = cv2.imdecode(png, cv2.IMREAD_COLOR).astype(np.float32)
    return page[top:top + height, left:left + width]


def slide_compare(driver, percent: int) -> None:
    """Move the before/after slider (the page reacts to its input event)."""
    driver.execute_script('const c = arguments[0]; c.value = arguments[1]; '
                          'c.dispatchEvent(new Event("input"));',
                          by_testid(driver, 'compare'), percent)


def watch_status(driver) -> None:
    """Record every text the status line shows from now on (window.statusSeen)."""
    driver.execute_script(
        'const s = document.getElementById("status"); window.statusSeen = [];'
        'new MutationObserver(() => window.statusSeen.push(s.textContent))'
        '.observe(s, {childList: true, characterData: true, subtree: true});')


def person_columns(shot: np.ndarray) -> tuple[int, int]:
    """Return the first and last column (of a view screenshot) off the camera's backdrop."""
    off = (np.abs(shot[..., ::-1] - np.array(BACKGROUND, np.float32)).max(axis=2) > 30)
    columns = np.flatnonzero(off.mean(axis=0) > 0.5)
    return int(columns[0]), int(columns[-1])


def assert_fills_view_around_the_person(driver) -> None:
    """Check that the live view has no black bars and that the person stands in its middle."""
    shot = view_shot(driver)
    edges = np.concatenate([shot[:, :4], shot[:, -4:]], axis=1)
    assert edges.mean() > 60, 'black bars beside the camera picture'
    first, last = person_columns(shot)
    width = shot.shape[1]
    assert abs((first + last) / 2 - width / 2) < 0.08 * width, (first, last, width)


def busy_loops(count: int = 2, seconds: float = 600.0) -> list:
    """Start ``count`` CPU-bound processes that end by themselves after ``seconds``."""
    code = f'import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n pass'
    return [subprocess.Popen([sys.executable, '-c', code]) for _ in range(count)]


def screenshot(driver, tmp: Path, name: str) -> None:
    """Save a half-size screenshot in tmp; also in docs/ with VTON_UPDATE_SCREENSHOTS=1."""
    path = tmp / f'{name}.png'
    driver.save_screenshot(str(path))
    image = cv2.imread(str(path))
    half = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2),
                      interpolation=cv2.INTER_AREA)
    targets = [path] + ([ROOT / 'docs' / f'{name}.png']
                        if os.environ.get('VTON_UPDATE_SCREENSHOTS') else [])
    for target in targets:
        cv2.imwrite(str(target), half)


def back_to_live(driver) -> None:
    """Leave a shown result or frozen frame for the live view (what "New photo" does)."""
    if by_testid(driver, 'live').is_displayed():
        by_testid(driver, 'live').click()
    wait_for(driver, 'return document.getElementById("app").dataset.state === "idle"')


def showing_a_result(stack, garment: str = 'red_striped_shirt') -> None:
    """Make the page show a try-on's result, unless it does (tests run in any order)."""
    if state(stack.driver) != 'result':
        back_to_live(stack.driver)
        run_to_end(stack.driver, tap(stack.driver, garment))
    assert state(stack.driver) == 'result', status(stack.driver)


def upload_a_shirt(stack):
    """Upload a garment photo from the page; return its card on the shelf."""
    driver = stack.driver
    photo = stack.tmp / 'my_shirt.png'
    cv2.imwrite(str(photo), cv2.cvtColor(samples.garment('tshirt', (120, 40, 160)),
                                         cv2.COLOR_RGB2BGR))
    listed = len(driver.find_elements('css selector', '[data-testid="garment"]'))
    by_testid(driver, 'upload').send_keys(str(photo))
    wait_for(driver, 'return document.querySelectorAll(\'[data-testid="garment"]\').length '
                     '> arguments[0]', listed)
    return driver.find_elements('css selector', '[data-garment-id^="upload-"]')[-1]


def test_the_page_loads_without_errors_and_the_live_view_moves(stack):
    driver = stack.driver
    driver.get(stack.url)
    first = wait_for(driver, f'return {PIXELS}(arguments[0])', 'camera')
    wait_for(driver, f'return {PIXELS}(arguments[0]) !== arguments[1]', 'camera', first)
    frames = driver.execute_script('return window.mirrorStats.frames')
    wait_for(driver, 'return window.mirrorStats.frames > arguments[0] + 3', frames)
    assert by_testid(driver, 'camera').is_displayed()
    assert state(driver) == 'idle' and status(driver) == sentences.state_sentence('idle')
    shown = page_image(driver, 'camera').astype(np.float32)
    sources = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)
               for f in sorted(stack.frames.iterdir())]
    away = {mirror: min(np.abs(shown - fit(rgb, *CAMERA_SIZE, mirror)).mean() for rgb in sources)
            for mirror in (True, False)}
    assert away[True] < 8 and away[False] > 3 * away[True], away  # a mirror's view
    # The server runs the demo model: the page says so over the live view.
    wait_for(driver, 'return window.mirrorStats.model !== null')
    label = by_testid(driver, 'model-label')
    assert label.is_displayed() and 'Demo model' in label.text
    assert float(label.value_of_css_property('font-size')[:-2]) >= 24  # legible at a mirror
    # A landscape camera on a portrait screen: cropped around the person, no black bars.
    wait_for(driver, 'return document.getElementById("camera").style.objectFit === "cover"')
    assert_fills_view_around_the_person(driver)
    assert errors(driver) == []


def test_the_shelf_swipes_whole_cards(stack):
    driver = stack.driver
    wait_for(driver, 'return document.querySelectorAll("#garments li").length === arguments[0]',
             len(SHOP_IDS))
    shelf = by_testid(driver, 'garments')
    assert shelf.value_of_css_property('scrollbar-width') == 'none'
    assert shelf.value_of_css_property('scroll-snap-type') == 'x mandatory'
    assert driver.execute_script('return arguments[0].scrollWidth > arguments[0].clientWidth',
                                 shelf)  # five cards: more than one screen
    assert driver.execute_script(f'return {CUT_CARDS}') == 0
    card = driver.execute_script('return document.querySelector("#garments li")'
                                 '.getBoundingClientRect().width')
    driver.execute_script('arguments[0].scrollBy({left: arguments[1], behavior: "instant"})',
                          shelf, card * 0.6)  # a short swipe: it ends on a whole card
    wait_for(driver, 'return arguments[0].scrollLeft > 0', shelf)
    wait_for(driver, f'return {CUT_CARDS} === 0')
    driver.execute_script('arguments[0].scrollTo({left: 0, behavior: "instant"})', shelf)


def test_the_catalogue_is_listed(stack):
    driver = stack.driver
    wait_for(driver, 'return document.querySelectorAll(\'[data-testid="garment"]\').length')
    buttons = driver.find_elements('css selector', '[data-testid="garment"]')
    assert sorted(b.get_attribute('data-garment-id') for b in buttons) == SHOP_IDS
    for button in buttons:  # a shopper scrolls the carousel to each one
        driver.execute_script('arguments[0].scrollIntoView()', button)
        assert button.get_attribute('data-garment-id').replace('_', ' ') in button.text.lower()
        assert 'Top' in button.text  # cloth type upper, as a shopper reads it
        assert button.size['height'] >= TOUCH and button.size['width'] >= TOUCH
    wait_for(driver, f'return {THUMBS_LOADED}')


def test_the_mask_overlay_toggles(stack):
    driver = stack.driver
    toggle = by_testid(driver, 'overlay-toggle')
    for size in ((1920, 1080), (1080, 1920)):  # landscape, then portrait
        browser.resize(driver, *size)
        assert driver.execute_script(SMALL_TARGETS) == [], size
        assert driver.execute_script(OFF_SCREEN) == [], size
    toggle.click()
    assert toggle.get_attribute('aria-pressed') == 'true'
    wait_for(driver, 'const o = document.getElementById("overlay"); '
                     'return !o.hidden && o.naturalWidth > 0')
    rgba = driver.execute_script(
        'const img = document.getElementById("overlay"); const c = '
        'document.createElement("canvas"); c.width = img.naturalWidth; '
        'c.height = img.naturalHeight; const ctx = c.getContext("2d"); ctx.drawImage(img, 0, 0);'
        'const a = ctx.getImageData(0, 0, c.width, c.height).data; let n = 0;'
        'for (let i = 3; i < a.length; i += 4) { n += a[i] > 0; } return n / (a.length / 4);')
    assert 0.02 < rgba < 0.9  # the person's garment area is tinted, not the whole frame
    toggle.click()
    assert toggle.get_attribute('aria-pressed') == 'false'
    assert not driver.find_element('id', 'overlay').is_displayed()


def test_a_tap_runs_a_try_on_and_shows_its_result(stack):
    driver = stack.driver
    seen = run_to_end(driver, tap(driver, 'red_striped_shirt'))
    assert state(driver) == 'result', status(driver)
    bar = by_testid(driver, 'progress')
    assert bar.get_attribute('role') == 'progressbar'
    assert (bar.get_attribute('aria-valuenow'), bar.get_attribute('aria-valuemax')) == \
        (str(STEPS), str(STEPS))
    steps = [now for now, top in seen if top == STEPS]
    assert steps == sorted(steps) and steps, seen  # rising, in steps of the server's total
    assert driver.execute_script(
        'return document.getElementById("preview").naturalWidth > 0')  # previews came
    result = by_testid(driver, 'result')
    assert result.is_displayed() and result.size['height'] > 800
    assert driver.execute_script('return [arguments[0].naturalWidth, '
                                 'arguments[0].naturalHeight]', result) == list(CAMERA_SIZE)
    assert by_testid(driver, 'before').is_displayed()  # before/after compare
    assert by_testid(driver, 'model-label').is_displayed()  # the demo model, on the result
    assert driver.execute_script(COVERED, 'model-label') == []
    wait_for(driver, 'return document.getElementById("result").style.objectFit === "cover"')
    assert driver.execute_script(SHOWN_AREA, 'result') >= 0.99 * driver.execute_script(
        'return document.getElementById("view").getBoundingClientRect().width * '
        'document.getElementById("view").getBoundingClientRect().height')  # fills the view
    # The result was made from the before: they differ on the garment only.
    before, after = page_image(driver, 'before'), page_image(driver, 'result')
    change = np.abs(before.astype(np.float32) - after).max(axis=2)
    assert change.mean() > 1.0 and np.median(change) < 12, (change.mean(), np.median(change))
    assert not by_testid(driver, 'overlay-toggle').is_displayed()  # live view only
    assert driver.execute_script(SMALL_TARGETS) == []
    assert driver.execute_script(OFF_SCREEN) == []
    whole = view_shot(driver)
    slide_compare(driver, 100)  # the before image over all of the result
    assert np.abs(view_shot(driver) - whole).mean() > 1.0
    slide_compare(driver, 0)
    assert np.abs(view_shot(driver) - whole).mean() < 0.5
    screenshot(driver, stack.tmp, 'mirror_portrait')
    browser.resize(driver, 1920, 1080)
    time.sleep(0.5)  # one layout pass
    assert result.is_displayed() and by_testid(driver, 'garment').is_displayed()
    assert driver.execute_script(SMALL_TARGETS) == []
    assert driver.execute_script(OFF_SCREEN) == []
    assert driver.execute_script(SHOWN_AREA, 'result') >= \
        0.99 * driver.execute_script(SHOWN_AREA, 'before')  # as large as the photo
    assert driver.execute_script(SHOWN_AREA, 'result') >= 0.97 * driver.execute_script(
        'const r = document.getElementById("view").getBoundingClientRect();'
        'return r.width * r.height')  # the view hugs the picture: no bars
    screenshot(driver, stack.tmp, 'mirror_landscape')
    browser.resize(driver, 1080, 1920)
    assert errors(driver) == []


def test_try_another_reuses_the_frozen_frame(stack):
    driver = stack.driver
    showing_a_result(stack)
    done = stack.server.log().count('ended SUCCESS')
    before = driver.execute_script(f'return {PIXELS}(arguments[0])', 'before')
    by_testid(driver, 'again').click()
    assert 'same photo' in status(driver)
    run_to_end(driver, tap(driver, 'green_dotted_shirt'))
    assert state(driver) == 'result', status(driver)
    wait_for(driver, f'return {PIXELS}(arguments[0]) === arguments[1]', 'before', before,
             timeout=30)
    assert stack.server.log().count('ended SUCCESS') == done + 1


def test_an_uploaded_garment_is_tried_on(stack):
    driver = stack.driver
    done = stack.server.log().count('ended SUCCESS')
    upload = upload_a_shirt(stack)
    assert upload.get_attribute('textContent') == 'Your garmentTop'  # name, cloth type
    assert 'shelf' in status(driver)
    box = driver.execute_script('const r = document.querySelector(\'[data-garment-id="\' + '
                                'arguments[0] + \'"]\').getBoundingClientRect(); '
                                'return [r.left, r.right, innerWidth]',
                                upload.get_attribute('data-garment-id'))
    assert 0 <= (box[0] + box[1]) / 2 <= box[2], box  # scrolled into view
    wait_for(driver, 'return arguments[0].querySelector("img").naturalWidth > 0', upload)
    ends = driver.execute_script('return window.mirrorStats.ends')
    upload.click()
    run_to_end(driver, ends)
    assert state(driver) == 'result', status(driver)
    assert stack.server.log().count('ended SUCCESS') == done + 1


def long_try_ons(stack) -> None:
    """
    Make the next goals last until canceled: 1000 steps at 512x384, minutes here.

    A try-on that must still run at a later click may not end by itself first: at 128x96
    and 256x192 such try-ons ended before the click with four busy loops beside the suite.
    """
    stack.set_server('catvton.height', 512)
    stack.set_server('catvton.width', 384)
    stack.set_server('catvton.num_inference_steps', 1000)


def short_try_ons(stack) -> None:
    """Back to the module's try-ons (STEPS at the SERVER size)."""
    stack.set_server('catvton.num_inference_steps', STEPS)
    stack.set_server('catvton.height', SERVER['catvton.height'])
    stack.set_server('catvton.width', SERVER['catvton.width'])


def test_a_second_page_is_a_session_of_its_own(stack):
    driver = stack.driver  # shows a result; an upload of its shopper is on its shelf
    showing_a_result(stack)
    mine = driver.find_elements('css selector', '[data-garment-id^="upload-"]')
    upload_id = (mine[-1] if mine else upload_a_shirt(stack)).get_attribute('data-garment-id')
    before = driver.execute_script(f'return {PIXELS}(arguments[0])', 'before')
    other = browser.chrome(1080, 1920)  # the next shopper opens the page
    try:
        other.get(stack.url)
        wait_for(other, 'return window.mirrorStats.frames > 0')
        wait_for(other, 'return document.querySelectorAll(\'[data-testid="garment"]\').length'
                        ' === arguments[0]', len(SHOP_IDS))  # the catalogue, no upload
        assert state(other) == 'idle' and by_testid(other, 'camera').is_displayed()
        for name in ('before', 'result', 'preview'):
            assert not by_testid(other, name).is_displayed()
            assert other.execute_script('return !document.getElementById(arguments[0])'
                                        '.getAttribute("src")', name), name
        status_code = other.execute_async_script(
            'fetch(`api/garments/${arguments[0]}.jpg`).then((r) => arguments[1](r.status))',
            upload_id)
        assert status_code == 404  # another page's upload is not shown to it
        # Its "New photo" and cancels, and a try-on of its own, leave the first page alone.
        watch_status(driver)
        watch_status(other)
        other.execute_script('document.getElementById("live").click();'
                             'document.getElementById("cancel").click();')
        long_try_ons(stack)  # still running at the next tap, until its page cancels it
        ends = tap(other, 'red_tshirt')
        wait_for(other, 'return document.getElementById("app").dataset.state === "running"')
        short_try_ons(stack)  # the next goals: as before
        tap(driver, 'yellow_tshirt')  # while the other page's try-on runs
        wait_for(driver, 'return window.statusSeen.includes(arguments[0])',
                 sentences.state_sentence('busy'))
        by_testid(other, 'cancel').click()  # its own try-on, its own cancel
        run_to_end(other, ends)
        assert 'cancel' in status(other).lower(), status(other)
        assert sentences.state_sentence('busy') not in other.execute_script(
            'return window.statusSeen')
        assert state(driver) == 'result'
        assert driver.execute_script(f'return {PIXELS}(arguments[0])', 'before') == before
        assert driver.find_elements('css selector', f'[data-garment-id="{upload_id}"]')
        assert [e for e in errors(other) if upload_id not in e['message']] == []
    finally:
        other.quit()
        short_try_ons(stack)


def test_before_and_after_are_right_beside_busy_loops(stack):
    driver = stack.driver
    loops = busy_loops(2)
    try:
        back_to_live(driver)
        run_to_end(driver, tap(driver, 'red_striped_shirt'))
        assert state(driver) == 'result', status(driver)
        before, after = page_image(driver, 'before'), page_image(driver, 'result')
        sources = [fit(cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB), *CAMERA_SIZE, True)
                   for f in sorted(stack.frames.iterdir())]
        away = [np.abs(before.astype(np.float32) - rgb).mean() for rgb in sources]
        assert min(away) < 8, away  # before: a camera frame, never the result
        change = np.abs(before.astype(np.float32) - after).max(axis=2)
        assert change.mean() > 1.0 and np.median(change) < 12  # the result of that frame
        # "Try another" dresses the same frame.
        by_testid(driver, 'again').click()
        assert 'same photo' in status(driver)
        run_to_end(driver, tap(driver, 'green_dotted_shirt'))
        assert state(driver) == 'result', status(driver)
        again, second = page_image(driver, 'before'), page_image(driver, 'result')
        assert np.array_equal(again, before)
        change = np.abs(again.astype(np.float32) - second).max(axis=2)
        assert np.median(change) < 12 and np.abs(second.astype(np.float32) - after).mean() > 1
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    assert errors(driver) == []


def test_nobody_in_view_resets_the_page(stack):
    # A mirror_ui whose masks never show anyone (its mask topic has no publisher): after
    # ui.idle_reset seconds without a person or a tap, its page forgets everything.
    proc, url = stack.start_ui('idle', extra=('-r', 'agnostic_mask:=nobody_here'),
                               **{'ui.idle_reset': 8.0})
    other = browser.chrome(1080, 1920)
    try:
        other.get(url)
        wait_for(other, 'return window.mirrorStats.frames > 0')
        wait_for(other, 'return document.querySelectorAll(\'[data-testid="garment"]\').length')
        photo = stack.tmp / 'idle_shirt.png'
        cv2.imwrite(str(photo), cv2.cvtColor(samples.garment('tshirt', (30, 140, 60)),
                                             cv2.COLOR_RGB2BGR))
        by_testid(other, 'upload').send_keys(str(photo))
        wait_for(other, 'return document.querySelector(\'[data-garment-id^="upload-"]\')')
        tap(other, 'red_tshirt')  # the frame alone: the server makes its mask
        wait_for(other, 'return window.mirrorStats.result !== null')  # the result came
        wait_for(other, 'return window.mirrorStats.resets > 0')
        assert state(other) == 'idle' and by_testid(other, 'camera').is_displayed()
        for name in ('before', 'result', 'preview'):
            assert not by_testid(other, name).is_displayed()
        wait_for(other, 'return !document.querySelector(\'[data-garment-id^="upload-"]\')')
        assert 'back to the live view' in proc.log()
    finally:
        other.quit()
    assert proc.stop() == 0
    stack.procs.remove(proc)
    # The shopper in front of the main mirror was seen all along: its page never reset.
    assert stack.driver.execute_script('return window.mirrorStats.resets') == 0


def test_a_long_try_on_is_canceled_from_the_page(stack):
    driver = stack.driver
    canceled = stack.server.log().count('ended CANCELED')  # by the tests before
    long_try_ons(stack)
    other = browser.chrome(1080, 1920)  # a second shopper's browser
    ui_b = None
    try:
        ui_b, url_b = stack.start_ui('b')  # a second page server on the same tryon_server
        other.get(stack.url)
        wait_for(other, 'return window.mirrorStats.frames > 0')
        back_to_live(driver)
        ends = tap(driver, 'blue_checked_shirt')
        started = ('return Number(document.querySelector(\'[data-testid="progress"]\')'
                   '.getAttribute("aria-valuenow")) >= 1')
        wait_for(driver, started)
        # The frame dressed is shown while the try-on runs (the camera goes on sending). A
        # wait, not a look: a full suite under load once saw the step before the picture.
        wait_for(driver, 'return !document.getElementById("before").hidden && '
                         'document.getElementById("app").dataset.state === "running"')
        assert by_testid(driver, 'before').is_displayed(), \
            stack.ui.log()[-3000:] + stack.server.log()[-2000:]
        assert not by_testid(driver, 'camera').is_displayed()
        frozen = driver.execute_script(f'return {PIXELS}(arguments[0])', 'before')
        frames = driver.execute_script('return window.mirrorStats.frames')
        wait_for(driver, 'return window.mirrorStats.frames > arguments[0] + 3', frames)
        assert driver.execute_script(f'return {PIXELS}(arguments[0])', 'before') == frozen
        eta = wait_for(driver, 'return document.getElementById("eta").textContent')
        assert re.fullmatch(r'about \d+ s left|step \d+ of 1000', eta), eta
        # The other page of the same mirror keeps its live view; its tap is answered
        # "Please wait" (on that page only), and its cancels cannot end this try-on.
        watch_status(driver)
        watch_status(other)
        assert state(other) == 'idle'
        tap(other, 'yellow_tshirt')
        wait_for(other, 'return window.statusSeen.includes(arguments[0])',
                 sentences.state_sentence('busy'))
        other.execute_script('for (let i = 0; i < 30; i += 1) {'
                             ' document.getElementById("cancel").click(); }')
        step = int(by_testid(driver, 'progress').get_attribute('aria-valuenow'))
        wait_for(driver, 'return Number(document.querySelector(\'[data-testid="progress"]\')'
                         '.getAttribute("aria-valuenow")) >= arguments[0] + 2', step)
        assert state(driver) == 'running'
        assert stack.server.log().count('ended CANCELED') == canceled
        assert sentences.state_sentence('busy') not in driver.execute_script(
            'return window.statusSeen')
        # A tap on the other mirror page meets the server's busy policy (reject).
        other.get(url_b)
        wait_for(other, 'return document.getElementById("app").dataset.state === "idle"')
        wait_for(other, 'return window.mirrorStats.frames > 0')  # page b's node sees the camera
        run_to_end(other, tap(other, 'yellow_tshirt'))
        assert status(other) == sentences.error_sentence('REJECTED')
        assert ui_b.stop() == 0
        by_testid(driver, 'cancel').click()
        run_to_end(driver, ends)
        assert 'cancel' in status(driver).lower()
        assert stack.server.log().count('ended CANCELED') == canceled + 1
        # A cancel pressed before the goal's acceptance arrives is sent when it does.
        ends = driver.execute_script('return window.mirrorStats.ends')
        driver.execute_script('document.querySelector(\'[data-garment-id="red_striped_shirt"]\')'
                              '.click(); document.getElementById("cancel").click();')
        run_to_end(driver, ends)
        assert 'cancel' in status(driver).lower()
        wait_until(lambda: stack.server.log().count('ended CANCELED') >= canceled + 2,
                   what='the second CANCELED goal in the log')
        assert stack.server.log().count('ended CANCELED') == canceled + 2
    finally:
        other.quit()
        if ui_b is not None:
            stack.procs.remove(ui_b)
            ui_b.stop()
        short_try_ons(stack)
    assert errors(driver) == []


def test_a_try_and_cancel_storm_cannot_starve_another_page(stack):
    # No browser needed: two pages over real WebSockets. One taps and cancels in a loop, as
    # a hostile page may; the other is a shopper who taps again when told "Please wait".
    busy = sentences.state_sentence('busy')
    successes = stack.server.log().count('ended SUCCESS')

    async def read(ws, states: list) -> None:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and json.loads(msg.data)['type'] == 'state':
                states.append(json.loads(msg.data))

    def ends_of(states: list) -> list:
        ends, flying = [], False
        for message in states:
            if message['state'] == 'sending':
                flying = True
            elif flying and message['state'] in ('result', 'error'):
                ends.append(message['state'])
                flying = False
        return ends

    async def storm() -> tuple[int, int, list]:
        async with ClientSession() as http:
            attacker = await http.ws_connect(stack.url + 'ws')
            shopper = await http.ws_connect(stack.url + 'ws')
            mine, theirs = [], []
            readers = [asyncio.ensure_future(read(attacker, theirs)),
                       asyncio.ensure_future(read(shopper, mine))]
            commands = taps = 0
            last_tap = 0.0
            deadline = time.monotonic() + HANG_GUARD
            while len(ends_of(mine)) < 2 and time.monotonic() < deadline:
                for kind in ('try', 'cancel'):  # the storm: 40 commands a second
                    await attacker.send_str(json.dumps({'type': kind, 'garment': 'red_tshirt'}))
                    commands += 1
                idle = mine and mine[-1]['state'] not in ('sending', 'running', 'canceling')
                if idle and time.monotonic() - last_tap > 1.0:
                    await shopper.send_str(json.dumps({'type': 'try',
                                                       'garment': 'yellow_tshirt'}))
                    taps, last_tap = taps + 1, time.monotonic()
                await asyncio.sleep(0.05)
            await attacker.close()
            await shopper.close()
            for reader in readers:
                reader.cancel()
            told_to_wait = sum(m['status'] == busy for m in mine)
            return commands, taps - told_to_wait, ends_of(mine)

    commands, started, ends = asyncio.run(storm())
    assert ends == ['result', 'result'], ends  # both of the shopper's try-ons ran
    assert started == 2 and commands > 40  # "Please wait" only for the shopper's own taps
    assert stack.server.log().count('ended SUCCESS') == successes + 2


def test_every_request_stays_on_the_pages_origin(stack):
    origin = stack.url.rstrip('/')
    urls = []
    for entry in stack.driver.get_log('performance'):
        message = json.loads(entry['message'])['message']
        if message['method'] == 'Network.requestWillBeSent':
            urls.append(message['params']['request']['url'])
        elif message['method'] == 'Network.webSocketCreated':
            urls.append(message['params']['url'])
    assert any(u.startswith('ws://') for u in urls) and len(urls) > 5
    foreign = [u for u in urls if not u.startswith((origin + '/', 'ws' + origin[4:] + '/',
                                                    'blob:' + origin + '/'))]
    assert foreign == []


def test_a_restarting_mirror_shows_a_banner_and_the_page_reconnects(stack):
    driver = stack.driver
    port = int(stack.url.rsplit(':', 1)[1].strip('/'))
    assert not by_testid(driver, 'banner').is_displayed()
    assert stack.ui.stop() == 0
    wait_for(driver, 'return !document.querySelector(\'[data-testid="banner"]\').hidden')
    assert 'connect' in by_testid(driver, 'banner').text.lower()
    assert driver.execute_script(COVERED, 'banner') == []  # the banner covers no control
    stack.ui, url = stack.start_ui('ui2', **{'ui.port': port})
    stack.ui_node = 'mirror_ui2'
    assert url == stack.url
    wait_for(driver, 'return document.querySelector(\'[data-testid="banner"]\').hidden')
    frames = driver.execute_script('return window.mirrorStats.frames')
    wait_for(driver, 'return window.mirrorStats.frames > arguments[0]', frames)
    refused = errors(driver)  # the reconnect attempts while the mirror was away
    assert all('WebSocket connection' in e['message'] for e in refused), refused


def test_the_token_is_enforced(stack):
    token_file = stack.tmp / 'mirror_token'
    token_file.write_text('open-sesame\n')
    token_file.chmod(0o600)
    proc, url = stack.start_ui('token', **{'ui.token_file': str(token_file)})
    driver = browser.chrome(1080, 1920)
    try:
        driver.get(url)
        assert 'token' in driver.find_element('tag name', 'body').text
        assert not driver.find_elements('css selector', '[data-testid="camera"]')
        driver.get(url + '?token=wrong')
        assert not driver.find_elements('css selector', '[data-testid="camera"]')
        driver.get(url + '?token=open-sesame')
        # mirrorStats may not be defined yet (CI under load: "Cannot read properties of
        # undefined (reading 'frames')"); wait for it rather than fail.
        wait_for(driver, 'return window.mirrorStats && window.mirrorStats.frames > 2')  # cookie
        assert 'open-sesame' not in driver.current_url  # left the address bar and history
        assert driver.execute_script('return location.search') == ''
        wait_for(driver, "return document.querySelectorAll('.garment img').length === "
                         f'arguments[0] && {THUMBS_LOADED}', len(SHOP_IDS))
    finally:
        driver.quit()
    assert proc.stop() == 0
    stack.procs.remove(proc)


def test_mirror_ui_uses_its_namespace(stack):
    proc, _ = stack.start_ui('ns', extra=('-r', '__ns:=/mirror_b'))
    wanted = {'/mirror_b/image_raw', '/mirror_b/agnostic_mask',
              '/mirror_b/tryon/_action/feedback', '/mirror_b/tryon/_action/status'}
    node = stack.client.node

    def subscribed() -> set:
        return {t for t in wanted if any(
            (e.node_name, e.node_namespace) == ('mirror_ns', '/mirror_b')
            for e in node.get_subscriptions_info_by_topic(t))}

    wait_until(lambda: subscribed() == wanted, what=lambda: f'{wanted}; seen {subscribed()}',
               interval=0.2)
    assert proc.stop() == 0
    stack.procs.remove(proc)


def test_a_try_on_server_that_restarts_shows_a_banner(stack):
    driver = stack.driver
    hidden = 'return document.querySelector(\'[data-testid="banner"]\').hidden'
    assert driver.execute_script(hidden)
    assert stack.server.stop() == 0
    stack.procs.remove(stack.server)
    wait_for(driver, hidden.replace('return ', 'return !'))
    assert by_testid(driver, 'banner').text == sentences.state_sentence('offline')
    stack.server = stack.start_server('server2')
    wait_for(driver, hidden)
    assert state(driver) == 'idle' and status(driver) == sentences.state_sentence('idle')


def test_no_camera_frame_shows_its_sentence(stack):
    driver = stack.driver
    stack.set_server('tryon.pair_max_age', 1.0)
    stack.set_server('tryon.pair_max_age', 1.0, stack.ui_node)  # the oldest frame a tap sends
    assert stack.camera.stop() == 0
    stack.procs.remove(stack.camera)
    time.sleep(1.5)  # the newest frame+mask pair is now older than tryon.pair_max_age
    if state(driver) != 'idle':
        by_testid(driver, 'live').click()
    run_to_end(driver, tap(driver, 'red_striped_shirt'))
    assert status(driver) == sentences.error_sentence('NO_PERSON_FRAME')
    assert errors(driver) == []


def test_no_image_is_written_to_disk_or_logged(stack):
    # Every mirror_ui of this module ran in ui_home (working, home and temporary folder)
    # through try-ons, an upload and restarts: no image file there, none in any log.
    magic = (b'\xff\xd8\xff', b'\x89PNG', b'RIFF', b'BM')
    files = [f for f in (stack.tmp / 'ui_home').rglob('*') if f.is_file()]
    assert [f for f in files if f.read_bytes().startswith(magic)] == []
    for log in [*stack.tmp.glob('mirror_*.log'), *files]:
        text = log.read_bytes()
        assert not any(m in text for m in magic[:2]), log
        assert max(map(len, text.splitlines()), default=0) < 1000, log
