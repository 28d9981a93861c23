"""The mirror page's ROS-free parts: web server, access rules, hub, session, sentences."""

import asyncio
import json

from aiohttp import ClientSession, CookieJar, WSServerHandshakeError
import cv2
import numpy as np
import pytest
from vton_interfaces.action import TryOn
from vton_ros.training.tryon_data import draw_pattern, flat_lay
from vton_ros.ui import hub as kinds, images, sentences
from vton_ros.ui.app import build_app, check_bind, CSP, is_loopback, WebServer
from vton_ros.ui.catalog import Garments
from vton_ros.ui.hub import Hub
from vton_ros.ui.session import Session

CODES = [n for n in dir(TryOn.Result) if n.isupper() and isinstance(getattr(TryOn.Result, n), int)]


def png(rgb: np.ndarray) -> bytes:
    """Encode an RGB image as PNG bytes (an upload)."""
    return cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


@pytest.fixture(scope='module')
def catalog_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp('garments')
    for name, colour in (('red_shirt', (200, 30, 40)), ('blue_shirt', (40, 70, 190))):
        rgb = flat_lay(draw_pattern('stripes', 128, 96, (colour, (245, 245, 245)), 24))
        (folder / f'{name}.png').write_bytes(png(rgb))
    (folder / 'catalog.yaml').write_text('red_shirt: upper\n')
    return folder


class Port:
    """The node's side of the session, recorded (sent goals, cancels)."""

    def __init__(self) -> None:
        self.sent = []
        self.canceled = []

    def send(self, seq, spec):
        self.sent.append((seq, spec))

    def cancel(self, handle):
        self.canceled.append(handle)


class Recorder:
    """Collects what the session publishes."""

    def __init__(self) -> None:
        self.states = []
        self.images = []

    def state(self, state):
        self.states.append(dict(state))

    def image(self, kind, data):
        self.images.append((kind, data))


def session(catalog_dir):
    port, out = Port(), Recorder()
    s = Session(port, Garments(str(catalog_dir)), out.state, out.image)
    s.server_ready(True)
    return s, port, out


def test_every_error_code_has_a_shoppers_sentence():
    for code in CODES:
        if code != 'SUCCESS':
            assert code in sentences.ERRORS, code
    assert sentences.error_sentence('NO_PERSON_DETECTED') == 'Step in front of the mirror.'
    assert 'cancel' in sentences.error_sentence('CANCELED').lower()


def test_bind_rules():
    assert is_loopback('127.0.0.1') and is_loopback('::1') and is_loopback('localhost')
    assert not is_loopback('0.0.0.0') and not is_loopback('192.168.1.5')
    check_bind('127.0.0.1', '')
    check_bind('0.0.0.0', 'secret')
    with pytest.raises(ValueError, match='ui.token'):
        check_bind('0.0.0.0', '')
    with pytest.raises(ValueError, match='empty'):
        check_bind('', 'x')


def test_catalogue_and_uploads(catalog_dir):
    garments = Garments(str(catalog_dir), max_uploads=2)
    items = garments.items()
    assert [i['id'] for i in items] == ['blue_shirt', 'red_shirt']
    assert items[1]['cloth_type'] == 'upper' and items[1]['name'] == 'red shirt'
    assert garments.thumbnail('red_shirt')[:2] == b'\xff\xd8'
    assert garments.get('../etc/passwd') is None
    photo = png(np.full((64, 48, 3), 90, np.uint8))
    item = garments.add_upload(photo, 'lower')
    assert item['upload'] and item['cloth_type'] == 'lower'
    assert garments.get(item['id']).image.shape == (64, 48, 3)
    for _ in range(2):
        garments.add_upload(photo, 'upper')
    assert garments.get(item['id']) is None  # only the newest two are kept
    for data, kind, match in ((photo, 'hat', 'cloth type'), (b'not an image', 'upper', 'not a'),
                              (png(np.zeros((8, 8, 3), np.uint8)), 'upper', 'too small'),
                              (png(np.zeros((40, 400, 3), np.uint8)), 'upper', 'narrow')):
        with pytest.raises(ValueError, match=match):
            garments.add_upload(data, kind)
    with pytest.raises(ValueError, match='too large'):
        Garments(max_pixels=1000).add_upload(photo, 'upper')


def test_a_cancel_before_acceptance_is_sent_when_the_goal_is_accepted(catalog_dir):
    s, port, out = session(catalog_dir)
    s.try_on('red_shirt')
    assert s.state == 'sending' and port.sent[0][1].garment_id == 'red_shirt'
    s.cancel()
    assert s.state == 'canceling' and port.canceled == []
    s.on_accepted(1, 'handle-1')
    assert port.canceled == ['handle-1']
    s.on_result(1, 'CANCELED', None, None, (0, 0), 0.0)
    assert s.state == 'error' and 'cancel' in out.states[-1]['status'].lower()


def test_a_result_freezes_its_frame_and_the_next_tap_reuses_it(catalog_dir):
    s, port, out = session(catalog_dir)
    person = np.full((48, 64, 3), 100, np.uint8)
    s.frames.add((5, 0), person)
    s.try_on('red_shirt')
    s.on_accepted(1, 'h')
    s.on_feedback(1, 1, 4, 2.5, np.zeros((8, 6, 3), np.uint8))
    assert out.states[-1]['step'] == 1 and out.states[-1]['total'] == 4
    s.try_on('blue_shirt')  # busy: not sent
    assert len(port.sent) == 1 and 'already' in out.states[-1]['status']
    mask = np.zeros((48, 64), np.uint8)
    s.on_result(1, 'SUCCESS', np.full((48, 64, 3), 200, np.uint8), mask, (5, 0), 1.5)
    assert s.state == 'result' and out.states[-1]['server_total'] == 1.5
    assert [k for k, _ in out.images] == [kinds.PREVIEW, kinds.BEFORE, kinds.RESULT]
    before = cv2.imdecode(np.frombuffer(out.images[1][1], np.uint8), cv2.IMREAD_COLOR)
    assert abs(int(before.mean()) - 100) <= 2  # the camera frame, not the result
    s.try_on('red_shirt')  # same cloth type: frozen frame and its mask
    spec = port.sent[-1][1]
    assert spec.person is person and spec.mask is mask
    s.on_accepted(2, 'h2')
    s.on_result(1, 'SUCCESS', person, mask, (5, 0), 1.0)  # a stale answer is ignored
    assert s.state == 'running'
    s.on_result(2, 'NO_PERSON_DETECTED', None, None, (0, 0), 0.0)
    assert out.states[-1]['status'] == 'Step in front of the mirror.'
    s.go_live()
    s.try_on('red_shirt')
    assert port.sent[-1][1].person is None


def test_the_frame_of_a_long_try_on_is_kept_for_the_compare(catalog_dir):
    s, port, out = session(catalog_dir)
    person = np.full((48, 64, 3), 100, np.uint8)
    s.frames.add((1, 0), person)  # the frame (with a mask) the server takes
    s.try_on('red_shirt')
    s.frames.add((2, 0), person + 1)  # a frame after the tap, before the server's choice
    s.on_accepted(1, 'h')
    for second in range(3, 200):  # a long try-on: the ring has long forgotten the tap
        s.frames.add((second, 0), np.zeros((48, 64, 3), np.uint8))
    assert s.frames.get((2, 0)) is not None
    s.on_result(1, 'SUCCESS', np.full((48, 64, 3), 200, np.uint8), None, (1, 0), 9.0)
    before = cv2.imdecode(np.frombuffer(out.images[-2][1], np.uint8), cv2.IMREAD_COLOR)
    assert out.images[-2][0] == kinds.BEFORE and abs(int(before.mean()) - 100) <= 2
    assert s.frames.get((1, 0)) is None  # unpinned once the result came


def test_the_session_waits_for_the_server(catalog_dir):
    port, out = Port(), Recorder()
    s = Session(port, Garments(str(catalog_dir)), out.state, out.image)
    s.try_on('red_shirt')
    assert port.sent == [] and s.state == 'offline'
    s.server_ready(True)
    assert s.state == 'idle'
    s.try_on('red_shirt')
    s.on_rejected(1)
    assert 'busy' in out.states[-1]['status']
    s.try_on('red_shirt')
    s.on_accepted(2, 'h')
    s.server_ready(False)  # the server went away during the try-on
    assert s.state == 'offline'
    s.on_result(2, 'SUCCESS', np.zeros((4, 4, 3), np.uint8), None, (0, 0), 1.0)
    assert s.state == 'offline'


def test_images():
    rgb = np.zeros((480, 640, 3), np.uint8)
    small = cv2.imdecode(np.frombuffer(images.jpeg(rgb, 80, 320), np.uint8), cv2.IMREAD_COLOR)
    assert small.shape == (240, 320, 3)
    mask = np.zeros((100, 100), np.uint8)
    mask[10:20] = 255
    rgba = cv2.imdecode(np.frombuffer(images.mask_overlay(mask), np.uint8),
                        cv2.IMREAD_UNCHANGED)
    assert rgba.shape == (100, 100, 4) and rgba[15, 5, 3] > 0 and rgba[50, 5, 3] == 0


class Served:
    """The real web server on a free loopback port with a recording controller."""

    def __init__(self, catalog_dir, token=''):
        self.commands = []
        self.hub = Hub()
        self.garments = Garments(str(catalog_dir))
        app = build_app(self, self.garments, self.hub, token, max_upload_bytes=64 * 1024)
        self.server = WebServer(app, self.hub)
        self.url = f'http://127.0.0.1:{self.server.start("127.0.0.1", 0)}'

    def try_on(self, gid):
        self.commands.append(('try', gid))

    def cancel(self):
        self.commands.append(('cancel',))

    def go_live(self):
        self.commands.append(('live',))


def run(coroutine):
    return asyncio.run(coroutine)


def test_page_assets_and_headers(catalog_dir):
    served = Served(catalog_dir)
    try:
        async def check():
            async with ClientSession() as http:
                for path in ('/', '/static/mirror.js', '/static/mirror.css', '/api/garments',
                             '/api/garments/red_shirt.jpg'):
                    async with http.get(served.url + path) as r:
                        assert r.status == 200, path
                        assert r.headers['Content-Security-Policy'] == CSP
                        body = await r.read()
                    if path == '/':
                        text = body.decode()
                        assert 'data-testid="camera"' in text and '//' not in \
                            text.replace('http://www.w3.org', '')
                for path in ('/api/garments/nope.jpg', '/static/../app.py'):
                    async with http.get(served.url + path) as r:
                        assert r.status in (403, 404), path
                # another host name (DNS rebinding) is refused without a token
                async with http.get(served.url + '/', headers={'Host': 'evil.example:80'}) as r:
                    assert r.status == 403
                photo = png(np.full((64, 48, 3), 90, np.uint8))
                async with http.post(served.url + '/api/upload?cloth_type=upper',
                                     data=photo) as r:
                    assert r.status == 200 and (await r.json())['upload']
                async with http.post(served.url + '/api/upload?cloth_type=upper',
                                     data=b'x' * 100_000) as r:
                    assert r.status == 413
                async with http.post(served.url + '/api/upload?cloth_type=upper', data=photo,
                                     headers={'Origin': 'http://evil.example'}) as r:
                    assert r.status == 403
        run(check())
    finally:
        served.server.stop()


def test_websocket_state_frames_and_commands(catalog_dir):
    served = Served(catalog_dir)
    try:
        async def check():
            async with ClientSession() as http:
                with pytest.raises(WSServerHandshakeError):
                    await http.ws_connect(served.url + '/ws',
                                          headers={'Origin': 'http://evil.example'})
                ws = await http.ws_connect(served.url + '/ws')
                first = json.loads((await ws.receive()).data)
                assert first['type'] == 'state'
                await ws.send_str(json.dumps({'type': 'try', 'garment': 'red_shirt'}))
                await ws.send_str('{not json')
                await ws.send_str(json.dumps({'type': 'try', 'garment': ['x']}))
                await ws.send_str(json.dumps({'type': 'cancel'}))
                await ws.send_str(json.dumps({'type': 'overlay', 'on': True}))
                for _ in range(100):
                    if served.hub.overlay_watched():
                        break
                    await asyncio.sleep(0.05)
                served.hub.send_frame(kinds.FRAME, b'jpeg')
                served.hub.send_frame(kinds.OVERLAY, b'png')
                got = {(await ws.receive()).data, (await ws.receive()).data}
                assert got == {bytes([kinds.FRAME]) + b'jpeg', bytes([kinds.OVERLAY]) + b'png'}
                await ws.send_str('x' * 10_000)  # over the command size limit: closed
                msg = await ws.receive()
                assert msg.type.name in ('CLOSE', 'CLOSED', 'ERROR')
                await ws.close()
        run(check())
        assert served.commands == [('try', 'red_shirt'), ('cancel',)]
    finally:
        served.server.stop()


def test_the_token_is_required_for_every_request(catalog_dir):
    served = Served(catalog_dir, token='s3cret')
    try:
        async def check():
            async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as http:  # IP host
                for path in ('/', '/static/mirror.js', '/api/garments', '/ws'):
                    async with http.get(served.url + path) as r:
                        assert r.status == 401, path
                    async with http.get(served.url + path + '?token=wrong') as r:
                        assert r.status == 401, path
                async with http.get(served.url + '/?token=s3cret') as r:
                    assert r.status == 200
                async with http.get(served.url + '/api/garments') as r:  # the cookie
                    assert r.status == 200
                ws = await http.ws_connect(served.url + '/ws')
                assert json.loads((await ws.receive()).data)['type'] == 'state'
                await ws.close()
            async with ClientSession() as http:
                async with http.get(served.url + '/api/garments',
                                    headers={'X-Mirror-Token': 's3cret'}) as r:
                    assert r.status == 200
        run(check())
    finally:
        served.server.stop()
