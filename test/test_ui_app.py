"""The mirror page's ROS-free parts: web server, access rules, hub, session, sentences."""

import asyncio
import json

from aiohttp import ClientSession, CookieJar, WSServerHandshakeError
import cv2
from helpers import png
import numpy as np
import pytest
from vton_interfaces.action import TryOn
from vton_ros.ui import hub as kinds, images, sentences
from vton_ros.ui.app import build_app, check_bind, CSP, is_loopback, WebServer
from vton_ros.ui.catalog import Garments
from vton_ros.ui.hub import Hub

CODES = [n for n in dir(TryOn.Result) if n.isupper() and isinstance(getattr(TryOn.Result, n), int)]


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
    item = garments.add_upload(photo, 'lower', 'page-a')
    assert item['upload'] and item['cloth_type'] == 'lower'
    assert garments.get(item['id'], 'page-a').image.shape == (64, 48, 3)
    other = garments.add_upload(photo, 'upper', 'page-b')
    for _ in range(2):
        garments.add_upload(photo, 'upper', 'page-a')
    assert garments.get(item['id'], 'page-a') is None  # only a page's newest two are kept
    assert garments.get(other['id'], 'page-b') is not None  # another page's stays
    for data, kind, match in ((photo, 'hat', 'cloth type'), (b'not an image', 'upper', 'not a'),
                              (png(np.zeros((8, 8, 3), np.uint8)), 'upper', 'too small'),
                              (png(np.zeros((40, 400, 3), np.uint8)), 'upper', 'narrow')):
        with pytest.raises(ValueError, match=match):
            garments.add_upload(data, kind, 'page-a')
    with pytest.raises(ValueError, match='too large'):
        Garments(max_pixels=1000).add_upload(photo, 'upper', 'page-a')


def test_images():
    rgb = np.zeros((480, 640, 3), np.uint8)
    small = cv2.imdecode(np.frombuffer(images.jpeg(rgb, 80, 320), np.uint8), cv2.IMREAD_COLOR)
    assert small.shape == (240, 320, 3)
    mask = np.zeros((100, 100), np.uint8)
    mask[10:20] = 255
    rgba = cv2.imdecode(np.frombuffer(images.mask_overlay(mask), np.uint8),
                        cv2.IMREAD_UNCHANGED)
    assert rgba.shape == (100, 100, 4) and rgba[15, 5, 3] > 0 and rgba[50, 5, 3] == 0


class Recorded:
    """A page's session that records the page's commands."""

    def __init__(self, commands: list) -> None:
        self.page = f'page-{id(self)}'
        self._commands = commands

    def touch(self):
        pass

    def try_on(self, gid):
        self._commands.append(('try', gid))

    def cancel(self):
        self._commands.append(('cancel',))

    def go_live(self):
        self._commands.append(('live',))


class Served:
    """The real web server on a free loopback port with recording sessions."""

    def __init__(self, catalog_dir, token=''):
        self.commands = []
        self.pages = {}
        self.hub = Hub()
        self.garments = Garments(str(catalog_dir))
        app = build_app(self, self.garments, self.hub, token, max_upload_bytes=64 * 1024)
        self.server = WebServer(app, self.hub)
        self.url = f'http://127.0.0.1:{self.server.start("127.0.0.1", 0)}'

    def join(self, publish_state, _publish_image, _page=''):
        session = Recorded(self.commands)
        self.pages[session.page] = session
        publish_state({'state': 'idle'})
        return session

    def leave(self, session):
        self.pages.pop(session.page, None)

    def find(self, page):
        return self.pages.get(page)


def run(coroutine):
    return asyncio.run(coroutine)


async def page_id(ws) -> str:
    """Return the page id the server sends a new page (skipping its state)."""
    while True:
        message = json.loads((await ws.receive()).data)
        if message['type'] == 'page':
            return message['id']


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
                    assert r.status == 400 and 'page' in (await r.json())['error']
                ws_a = await http.ws_connect(served.url + '/ws')
                ws_b = await http.ws_connect(served.url + '/ws')
                a, b = [await page_id(ws) for ws in (ws_a, ws_b)]
                async with http.post(served.url + f'/api/upload?cloth_type=upper&page={a}',
                                     data=photo) as r:
                    item = await r.json()
                    assert r.status == 200 and item['upload']
                for page, listed in ((a, True), (b, False), ('forged', False)):
                    async with http.get(served.url + f'/api/garments?page={page}') as r:
                        ids = [i['id'] for i in (await r.json())['garments']]
                        assert (item['id'] in ids) == listed, page
                    async with http.get(served.url + item['thumb'] + f'?page={page}') as r:
                        assert r.status == (200 if listed else 404), page
                await ws_a.close()  # the page went: its session ends
                for _ in range(100):
                    if a not in served.pages:
                        break
                    await asyncio.sleep(0.05)
                assert a not in served.pages and b in served.pages
                await ws_b.close()
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
                served.hub.set_model('demo', 'models/demo')
                ws = await http.ws_connect(served.url + '/ws')
                first = [json.loads((await ws.receive()).data) for _ in range(3)]
                assert first[0] == {'type': 'model', 'kind': 'demo', 'name': 'models/demo'}
                assert {m['type'] for m in first[1:]} == {'page', 'state'}
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
                assert json.loads((await ws.receive()).data)['type'] in ('page', 'state')
                await ws.close()
            async with ClientSession() as http:
                async with http.get(served.url + '/api/garments',
                                    headers={'X-Mirror-Token': 's3cret'}) as r:
                    assert r.status == 200
        run(check())
    finally:
        served.server.stop()
