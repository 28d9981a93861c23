"""
The mirror page in headless Chromium: the demo stack's settings and the page's test hooks.

Shared by the browser test modules (data-testid markers, window.mirrorStats); the driver
comes from vton_ros.ui.browser.
"""

import base64
import os
from pathlib import Path
import re

import cv2
import numpy as np
import pytest
from rosutil import free_domain_id, HANG_GUARD, node_argv, Proc, ROOT, ros_env, stop_all, \
    wait_until

from vton_ros.media import garments
from vton_ros.ui import browser

DEMO = ROOT / 'models' / 'demo'
SHOP = ROOT / 'garments'  # the bundled catalogue (make_garments), read only
SHOP_IDS = sorted(garments.GarmentCatalog(str(SHOP)).ids())
STEPS = 4
SERVER = {'catvton.base_model': str(DEMO / 'base'), 'catvton.vae': str(DEMO / 'vae'),
          'catvton.attn_ckpt': str(DEMO / 'catvton'), 'catvton.device': 'cpu',
          'catvton.precision': 'fp32', 'catvton.height': 128, 'catvton.width': 96,
          'catvton.num_inference_steps': STEPS, 'catvton.repaint': True,
          'segmentation.device': 'cpu', 'tryon.pair_max_age': 30.0}
URL = re.compile(r'mirror page at (http://127\.0\.0\.1:\d+/)')
# An image element's pixels as a PNG data URL (what the page shows, at its own size).
# null while a new picture is still loading (a frame's src was just replaced): no pixels yet.
PNG_OF = """const img = document.getElementById(arguments[0]);
if (!img.complete || !img.naturalWidth) { return null; }
const canvas = document.createElement('canvas');
canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
canvas.getContext('2d').drawImage(img, 0, 0); return canvas.toDataURL('image/png');"""
# Shelf cards partly in view: a swipe must leave whole cards only.
CUT_CARDS = """(() => { const shelf = document.getElementById('garments').getBoundingClientRect();
return Array.from(document.querySelectorAll('#garments li')).map((li) =>
li.getBoundingClientRect()).filter((r) => r.right > shelf.left + 1 && r.left < shelf.right - 1
&& (r.left < shelf.left - 1 || r.right > shelf.right + 1)).length; })()"""


class LivePage:
    """A camera replay, segmentation_node with Live, the demo tryon_server, mirror_ui, Chromium.

    ``frames`` (file name -> RGB, sorted by name) are what camera_node replays at 4 Hz;
    ``segmentation`` and ``ui`` add parameters of those two nodes.
    """

    def __init__(self, tmp: Path, frames: dict[str, np.ndarray], size: tuple[int, int],
                 segmentation: dict | None = None, ui: dict | None = None) -> None:
        self.domain = free_domain_id()
        env = ros_env(self.domain)
        folder = tmp / 'frames'
        folder.mkdir()
        for name, frame in frames.items():
            cv2.imwrite(str(folder / name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        node = {'camera_node': {'camera.source': str(folder), 'camera.fps': 4.0,
                                'camera.width': size[0], 'camera.height': size[1]},
                'segmentation_node': {'segmentation.max_rate': 4.0, 'segmentation.device': 'cpu',
                                      'live.enabled': True, **(segmentation or {})},
                'tryon_server': dict(SERVER, **{'garments.catalog_dir': str(SHOP)})}
        self.procs = [Proc(node_argv(name, params), env, tmp / f'{name}.log')
                      for name, params in node.items()]
        home = tmp / 'ui_home'
        home.mkdir()
        self.ui = Proc(node_argv('mirror_ui', {'ui.port': 0, 'garments.catalog_dir': str(SHOP),
                                               'live.enabled': True, **(ui or {})}),
                       dict(env, HOME=str(home), TMPDIR=str(home)), tmp / 'mirror_ui.log',
                       cwd=home)
        self.procs.append(self.ui)
        self.url = URL.search(self.ui.wait_for_log('mirror page at', HANG_GUARD)).group(1)
        self.procs[2].wait_for_log('model loaded', timeout=HANG_GUARD)
        self.driver = browser.chrome(1080, 1920)

    def close(self) -> None:
        """Quit the browser, stop the nodes (each must exit 0)."""
        self.driver.quit()
        stop_all(self.procs)


def browser_or_skip() -> None:
    """Fail under CI, skip elsewhere, when Chromium, chromedriver or selenium is missing."""
    reason = browser.missing()
    if reason and os.environ.get('CI'):
        pytest.fail(f'CI must run the browser tests: {reason}')
    if reason:
        pytest.skip(reason)


def wait_for(driver, script: str, *args, timeout: float = HANG_GUARD):
    """Poll a JS expression until it returns something truthy; return that."""
    return wait_until(lambda: driver.execute_script(script, *args), timeout, script,
                      interval=0.1)


def state(driver) -> str:
    """Return the page's state: data-state of #app."""
    return driver.execute_script('return document.getElementById("app").dataset.state')


def by_testid(driver, name: str):
    """Return the element with this data-testid."""
    return driver.find_element('css selector', f'[data-testid="{name}"]')


def status(driver) -> str:
    """Return the status line's text."""
    return by_testid(driver, 'status').text


def errors(driver) -> list:
    """Return the console errors since the last call."""
    return [e for e in driver.get_log('browser') if e['level'] == 'SEVERE']


def tap(driver, garment: str) -> int:
    """Tap a garment of the shelf; return how many try-ons had ended before.

    Waits for the shelf and for the mirror to have its try-on server: a tap while the page
    says the mirror is offline starts nothing (the shopper sees why).
    """
    selector = f'[data-garment-id="{garment}"]'
    wait_for(driver, 'return document.querySelector(arguments[0])', selector)  # shelf loaded
    wait_for(driver, 'return document.getElementById("app").dataset.state !== "offline"')
    ends = driver.execute_script('return window.mirrorStats.ends')
    button = driver.find_element('css selector', selector)
    driver.execute_script('arguments[0].scrollIntoView({block: "nearest", inline: "start"})',
                          button)  # a shopper swipes the shelf to the card
    wait_for(driver, f'return {CUT_CARDS} === 0')  # the swipe snapped
    button.click()
    return ends


def run_to_end(driver, ends: int) -> list:
    """Wait for try-on number ``ends`` + 1 to end; return the (now, max) progress seen."""
    seen = []

    def ended() -> bool:
        if driver.execute_script('return window.mirrorStats.ends') > ends:
            return True
        bar = by_testid(driver, 'progress')
        seen.append((int(bar.get_attribute('aria-valuenow')),
                     int(bar.get_attribute('aria-valuemax'))))
        return False

    wait_until(ended, what=lambda: f'try-on {ends + 1} to end; the page says {status(driver)!r}',
               interval=0.05)
    return seen


def page_image(driver, element_id: str) -> np.ndarray:
    """Return the pixels an image element of the page holds (HxWx3 RGB)."""
    url = wait_for(driver, PNG_OF, element_id)
    data = np.frombuffer(base64.b64decode(url.split(',', 1)[1]), np.uint8)
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
