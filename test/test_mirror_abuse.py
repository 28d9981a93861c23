"""
The mirror page's server against a hostile client (issue 26), over real loopback sockets.

Every client here talks to 127.0.0.1 (some from 127.0.0.2 or .3: other loopback source
addresses, so other clients to the per-address limit); every loop is bounded in count, and
every wait is a hang guard that ends by itself.
"""

import asyncio
import io
import json
import logging
import os
import re
import socket
import struct
import threading
import time

from aiohttp import ClientSession, WSMsgType
import numpy as np
from PIL import Image
import pytest
from rosutil import HANG_GUARD, wait_until
from vton_ros.ui import app as app_module, images, limits
from vton_ros.ui.app import build_app, check_bind, load_token, TOKEN_ENV, WebServer
from vton_ros.ui.catalog import Garments
from vton_ros.ui.hub import Hub

HOST = '127.0.0.1'
PER_ADDRESS = 4
TOTAL = 10


class Page:
    """One page's session, recording its commands."""

    def __init__(self, commands: list, page: str) -> None:
        self.page = page
        self._commands = commands

    def try_on(self, gid):
        self._commands.append(('try', gid))

    def cancel(self):
        self._commands.append(('cancel',))

    def go_live(self):
        self._commands.append(('live',))

    def touch(self):
        """Note that the page asked for something (the sessions' idle clock)."""


class Served:
    """The real web server (build_app + WebServer) on a free loopback port."""

    def __init__(self, token: str = '', timeout: float = 30.0) -> None:
        self.commands: list = []
        self.pages: dict = {}
        self.hub = Hub()
        self.garments = Garments()
        app = build_app(self, self.garments, self.hub, token, max_upload_bytes=1 << 20,
                        timeout=timeout)
        self.server = WebServer(app, self.hub, timeout, TOTAL, PER_ADDRESS)
        self.port = self.server.start(HOST, 0)
        self.url = f'http://{HOST}:{self.port}'
        self.page = self.join(lambda _state: None, None).page  # a page that uploads
        self.upload_path = f'/api/upload?cloth_type=upper&page={self.page}'

    def join(self, publish_state, _publish_image, _page=''):
        page = Page(self.commands, os.urandom(8).hex())
        self.pages[page.page] = page
        publish_state({'state': 'idle'})
        return page

    def leave(self, page):
        self.pages.pop(page.page, None)

    def find(self, page):
        return self.pages.get(page)


@pytest.fixture
def served():
    server = Served()
    yield server
    server.server.stop()


@pytest.fixture
def quick():
    """Serve with a timeout (headers, bodies, idle connections) of one second."""
    server = Served(timeout=1.0)
    yield server
    server.server.stop()


def connect(port: int, source: str = HOST) -> socket.socket:
    """Open a TCP connection to the server from a loopback ``source`` address."""
    sock = socket.create_connection((HOST, port), timeout=HANG_GUARD,
                                    source_address=(source, 0))
    return sock


def request(path: str, port: int, *headers: bytes, method: bytes = b'GET',
            body: bytes = b'') -> bytes:
    """Return the bytes of an HTTP/1.1 request that closes its connection."""
    lines = [method + b' ' + path.encode() + b' HTTP/1.1', f'Host: {HOST}:{port}'.encode(),
             b'Connection: close', *headers]
    if body:
        lines.append(f'Content-Length: {len(body)}'.encode())
    return b'\r\n'.join(lines) + b'\r\n\r\n' + body


def until_closed(sock: socket.socket) -> bytes:
    """Read until the server closes the connection; return what it sent."""
    chunks = []
    with sock:
        sock.settimeout(HANG_GUARD)
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    return b''.join(chunks)


def exchange(port: int, data: bytes, source: str = HOST) -> bytes:
    """Send raw bytes on a new connection; return the whole answer."""
    sock = connect(port, source)
    sock.sendall(data)
    return until_closed(sock)


def status(reply: bytes) -> int:
    """Return the status code of a raw HTTP reply (0 = none)."""
    match = re.match(rb'HTTP/1\.[01] (\d{3})', reply)
    return int(match.group(1)) if match else 0


def png(width: int, height: int, mode: str = 'RGB', fmt: str = 'PNG') -> bytes:
    """Encode a one-colour image (a few KB, whatever its declared size)."""
    buf = io.BytesIO()
    colour = (90, 40, 200) if mode.startswith('RGB') else 90
    Image.new(mode, (width, height), colour).save(buf, fmt)
    return buf.getvalue()


def no_tracebacks(caplog) -> None:
    """Assert that nothing logged carries a traceback or is longer than a short line."""
    for record in caplog.records:
        assert record.exc_info is None and 'Traceback' not in record.getMessage(), record
        assert len(record.getMessage()) < 200, record.getMessage()


def lines(caplog, words: str) -> list[str]:
    """Return the logged lines containing ``words``."""
    return [r.getMessage() for r in caplog.records if words in r.getMessage()]


# ---- timeouts and connection limits ----------------------------------------------------

def test_silent_half_sent_and_idle_connections_are_closed(quick):
    silent = connect(quick.port)
    half = connect(quick.port)
    half.sendall(b'GET /api/garments HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ')
    idle = connect(quick.port)  # keep-alive after one complete request
    idle.sendall(request('/api/garments', quick.port).replace(b'Connection: close',
                                                              b'Connection: keep-alive'))
    assert until_closed(silent) == b''
    assert until_closed(half) == b''
    assert status(until_closed(idle)) == 200
    assert quick.server.gate.open == 0


def test_a_body_that_does_not_arrive_gets_a_408(quick, caplog):
    sock = connect(quick.port)
    sock.sendall(request(quick.upload_path, quick.port,
                         b'Content-Length: 100000', method=b'POST') + b'\x89PNG')
    reply = until_closed(sock)
    assert status(reply) == 408 and b'too long' in reply
    no_tracebacks(caplog)


def test_connections_past_the_limits_get_a_503_and_few_log_lines(served, caplog):
    caplog.set_level(logging.WARNING)
    held = [connect(served.port, '127.0.0.2') for _ in range(PER_ADDRESS)]
    wait_until(lambda: served.server.gate.open == PER_ADDRESS, HANG_GUARD,
               'counting the connections')
    for _ in range(40):
        reply = exchange(served.port, request('/api/garments', served.port), '127.0.0.2')
        assert status(reply) == 503 and b'too many connections' in reply
    assert status(exchange(served.port, request('/api/garments', served.port))) == 200
    held += [connect(served.port, '127.0.0.3') for _ in range(PER_ADDRESS)]
    held += [connect(served.port, '127.0.0.4') for _ in range(TOTAL - 2 * PER_ADDRESS)]
    wait_until(lambda: served.server.gate.open == TOTAL, HANG_GUARD, 'counting the connections')
    assert status(exchange(served.port, request('/', served.port), '127.0.0.5')) == 503
    refused = lines(caplog, 'refused connections')
    assert 2 <= len(refused) <= 6, refused  # 41 refusals, one line per kind per 10 s
    assert any('ui.max_connections)' in line for line in refused)
    for sock in held:
        sock.close()
    wait_until(lambda: served.server.gate.open == 0, HANG_GUARD, 'closed connections forgotten')
    assert status(exchange(served.port, request('/api/garments', served.port),
                           '127.0.0.2')) == 200
    no_tracebacks(caplog)


# ---- clean 4xx, never a traceback ------------------------------------------------------

def test_a_token_that_is_not_utf8_is_refused_with_a_401():
    served = Served(token='s3cret')
    try:
        for header in (b'X-Mirror-Token: \xff\xfe', b'Cookie: mirror_token=\xff\xfe',
                       b'Cookie: mirror_token="\xc3\x28"'):
            reply = exchange(served.port, request('/api/garments', served.port, header))
            assert status(reply) == 401, reply[:200]
        reply = exchange(served.port, request('/api/garments?token=%ff%fe', served.port))
        assert status(reply) == 401
        reply = exchange(served.port, request('/api/garments', served.port,
                                              b'X-Mirror-Token: s3cret'))
        assert status(reply) == 200
    finally:
        served.server.stop()


def test_origin_scheme_and_a_missing_host_are_refused(served):
    photo = png(64, 48)
    for origin, code in ((f'https://{HOST}:{served.port}', 403),
                         (f'http://{HOST}:{served.port + 1}', 403),
                         (f'http://{HOST}:{served.port}', 200)):
        reply = exchange(served.port, request(served.upload_path, served.port,
                                              f'Origin: {origin}'.encode(), method=b'POST',
                                              body=photo))
        assert status(reply) == code, origin
    reply = exchange(served.port, b'GET /api/garments HTTP/1.0\r\n\r\n')
    assert status(reply) == 400 and b'Host' in reply


def test_bad_page_commands_are_dropped_with_few_log_lines(served, caplog):
    caplog.set_level(logging.WARNING)

    async def storm():
        async with ClientSession() as http:
            ws = await http.ws_connect(served.url + '/ws')
            for i in range(300):
                await ws.send_str('{not json' if i % 2 else '{"type": "launch"}')
            for text in ('[' * 2000 + ']' * 2000, '{"a":' * 600 + '1' + '}' * 600,
                         'null', '"try"', '[1, 2]', '{"type": {}}', '{"type": "try"}',
                         '{"type": "try", "garment": ["x"]}'):
                await ws.send_str(text)
            await ws.send_str(json.dumps({'type': 'try', 'garment': 'shirt'}))
            wait = time.monotonic() + HANG_GUARD
            while not served.commands and time.monotonic() < wait:
                await asyncio.sleep(0.02)
            assert not ws.closed
            await ws.close()

    asyncio.run(storm())
    assert served.commands == [('try', 'shirt')]
    dropped = lines(caplog, 'page commands')
    assert 1 <= len(dropped) <= 4, dropped
    no_tracebacks(caplog)


def test_aborted_uploads_leave_no_traceback(served, caplog):
    caplog.set_level(logging.DEBUG)
    for _ in range(5):  # from an address of their own: the next request's limit is not theirs
        sock = connect(served.port, '127.0.0.6')
        sock.sendall(request(served.upload_path, served.port,
                             b'Content-Length: 500000', method=b'POST') + b'\x89PNG' * 1000)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        sock.close()  # a reset mid-body
    honest = request(served.upload_path, served.port, method=b'POST', body=png(64, 48))

    def answered() -> bytes | None:  # 429 while the server has not yet seen all 5 go
        reply = exchange(served.port, honest)
        return None if status(reply) == 429 else reply

    reply = wait_until(answered, HANG_GUARD, 'an upload slot after the aborted uploads')
    assert status(reply) == 200
    no_tracebacks(caplog)


# ---- uploads ---------------------------------------------------------------------------

def upload_reply(served, data: bytes) -> tuple[int, dict]:
    """POST an upload; return the status and its JSON."""
    reply = exchange(served.port, request(served.upload_path, served.port,
                                          method=b'POST', body=data))
    return status(reply), json.loads(reply.split(b'\r\n\r\n', 1)[1] or b'{}')


def test_uploads_are_bounded_shrunk_and_of_the_named_formats(served):
    code, item = upload_reply(served, png(4096, 4096, fmt='JPEG'))  # decoded at 1/4
    assert code == 200
    kept = served.garments.get(item['id'], served.page)
    assert max(kept.image.shape[:2]) == images.UPLOAD_SIDE and kept.image.dtype == np.uint8
    code, item = upload_reply(served, png(5000, 4000))  # 20 MP: past max_pixels
    assert code == 400 and 'too large' in item['error'] and '5000x4000' in item['error']
    code, item = upload_reply(served, png(4096, 4096))  # 48 MB of RGB: past the decoded bytes
    assert code == 400 and 'too large (4096x4096 decoded)' in item['error']
    code, item = upload_reply(served, png(1200, 1200, 'I;16'))  # 16-bit grey, made RGB
    assert code == 200
    code, item = upload_reply(served, png(4096, 4096, 'P'))  # 1 byte a pixel, 3 once RGB
    assert code == 400 and 'too large' in item['error']
    for fmt in ('TIFF', 'GIF'):
        code, item = upload_reply(served, png(64, 48, 'RGB' if fmt == 'TIFF' else 'P', fmt))
        assert code == 400 and 'not a JPEG, PNG, WebP or BMP' in item['error'], fmt
    for fmt in ('JPEG', 'WEBP', 'BMP'):
        assert upload_reply(served, png(64, 48, 'RGB', fmt))[0] == 200, fmt
    code, item = upload_reply(served, os.urandom(2 << 20))  # past max_upload_bytes
    assert code == 413 and 'too large' in item['error'].lower()
    code, item = upload_reply(served, png(640, 480)[:300])  # cut off after the header
    assert code == 400 and 'damaged' in item['error']


def test_decoded_bytes_are_bounded_before_decoding():
    with pytest.raises(ValueError, match='too large'):
        images.decode_upload(png(4096, 4096, 'RGBA'), 4096 * 4096, max_bytes=48 << 20)
    rgb = images.decode_upload(png(3000, 1000), 4096 * 4096, max_side=300)
    assert rgb.shape == (100, 300, 3)


def test_a_third_upload_at_once_is_asked_to_wait(served):
    slow = []
    for _ in range(app_module.UPLOADS_AT_ONCE):
        sock = connect(served.port)
        sock.sendall(request(served.upload_path, served.port,
                             b'Content-Length: 100000', method=b'POST') + b'\x89PNG')
        slow.append(sock)
    wait_until(lambda: served.server.gate.open == len(slow), HANG_GUARD,
               'the slow uploads arriving')
    deadline = time.monotonic() + HANG_GUARD
    code = 200
    while code != 429 and time.monotonic() < deadline:  # until both slow ones are read
        code, item = upload_reply(served, png(64, 48))
    assert code == 429 and 'try again' in item['error']
    for sock in slow:
        sock.close()


# ---- WebSocket: no deflate, slow readers dropped ---------------------------------------

def test_permessage_deflate_is_refused(served):
    async def check():
        async with ClientSession() as http:
            async with http.ws_connect(served.url + '/ws', compress=15) as ws:
                assert ws.compress == 0  # the server did not agree to deflate
                assert (await ws.receive()).type == WSMsgType.TEXT
    asyncio.run(check())


def test_a_page_that_never_reads_is_dropped(served, caplog):
    caplog.set_level(logging.WARNING)
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect((HOST, served.port))
    slow.sendall(request('/ws', served.port, b'Upgrade: websocket',
                         b'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
                         b'Sec-WebSocket-Version: 13').replace(b'Connection: close',
                                                               b'Connection: Upgrade'))
    received = []

    async def honest(ready: threading.Event):
        async with ClientSession() as http:
            async with http.ws_connect(served.url + '/ws') as ws:
                ready.set()
                while len(received) < 40:
                    msg = await ws.receive(timeout=HANG_GUARD)
                    if msg.type == WSMsgType.TEXT and '"pad"' in msg.data:
                        received.append(len(msg.data))

    ready = threading.Event()
    reader = threading.Thread(target=lambda: asyncio.run(honest(ready)))
    reader.start()
    assert ready.wait(HANG_GUARD)
    wait_until(lambda: served.hub.pages() == 2, HANG_GUARD, 'both pages joining')
    for _ in range(40):  # 4 MB to every page: the slow one cannot take it
        served.hub.send_json({'type': 'pad', 'pad': 'x' * 100_000})
        time.sleep(0.01)
    reader.join(HANG_GUARD)
    assert len(received) == 40  # the honest page got everything
    until_closed(slow)  # what the server had sent, then its end (a hang guard, not a wait)
    assert lines(caplog, 'read too slowly')
    wait_until(lambda: served.hub.pages() == 0, HANG_GUARD, 'both pages gone')


# ---- the token -------------------------------------------------------------------------

def test_the_token_comes_from_a_file_or_the_environment(tmp_path, caplog):
    path = tmp_path / 'token'
    path.write_text('  open-sesame \nsecond line\n')
    path.chmod(0o600)
    assert load_token(str(path), {TOKEN_ENV: 'other'}) == 'open-sesame'
    assert load_token('', {TOKEN_ENV: ' from-env\n'}) == 'from-env'
    assert load_token('', {}) == ''
    assert not lines(caplog, 'chmod')
    path.chmod(0o644)
    load_token(str(path), {})
    assert lines(caplog, 'chmod 600')
    with pytest.raises(ValueError, match='cannot be read'):
        load_token(str(tmp_path / 'missing'), {})
    (tmp_path / 'empty').write_text('\n')
    with pytest.raises(ValueError, match='empty'):
        load_token(str(tmp_path / 'empty'), {})
    with pytest.raises(ValueError, match='ui.token_file'):
        check_bind('0.0.0.0', '')


def test_log_throttle_counts_what_it_does_not_write():
    now = [0.0]
    records = []

    class Sink(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger('test_mirror_abuse.throttle')
    logger.addHandler(Sink())
    logger.propagate = False
    throttle = limits.LogThrottle(logger, 10.0, clock=lambda: now[0])
    for second in range(25):
        now[0] = float(second)
        for _ in range(100):
            throttle.note('dropped things')
    assert records == ['dropped things', 'dropped things (1000 times in 10 s)',
                       'dropped things (1000 times in 10 s)']


# ---- the node: its token is no ROS parameter, and it stays small -----------------------

def rss_mib(pid: int) -> float:
    """Return a process's resident memory in MiB (VmRSS: its own, files and shared)."""
    for line in open(f'/proc/{pid}/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    raise AssertionError(f'no VmRSS for {pid}')


async def drain(ws) -> None:
    """Read a WebSocket until it closes (what a page does; pings are answered)."""
    while (await ws.receive()).type not in (WSMsgType.CLOSE, WSMsgType.CLOSED,
                                            WSMsgType.ERROR):
        pass


@pytest.mark.stack
def test_the_node_keeps_its_token_out_of_ros_and_stays_small(tmp_path):
    from rcl_interfaces.srv import GetParameters, ListParameters
    from rosutil import free_domain_id, node_argv, Proc, ros_env, Spinner

    token = 'tok-' + os.urandom(12).hex()
    domain = free_domain_id()
    proc = Proc(node_argv('mirror_ui', {'ui.port': 0}),
                ros_env(domain, **{TOKEN_ENV: token}), tmp_path / 'mirror_ui.log')
    client = None
    try:
        url = re.search(r'mirror page at (http://127\.0\.0\.1:\d+)/',
                        proc.wait_for_log('mirror page at')).group(1)
        assert token not in proc.log()
        client = Spinner('mirror_abuse_reader', domain)
        node = client.node
        lister = node.create_client(ListParameters, '/mirror_ui/list_parameters')
        getter = node.create_client(GetParameters, '/mirror_ui/get_parameters')
        assert lister.wait_for_service(timeout_sec=HANG_GUARD)
        assert getter.wait_for_service(timeout_sec=HANG_GUARD)
        names = client.call(lister, ListParameters.Request()).result.names
        assert 'ui.token_file' in names and 'ui.token' not in names
        values = client.call(getter, GetParameters.Request(names=names)).values
        assert len(values) == len(names)
        assert not [v for v in values if token in v.string_value]

        async def serve_a_page():
            async with ClientSession(headers={'X-Mirror-Token': token}) as http:
                async with ClientSession() as stranger:
                    async with stranger.get(url + '/api/garments') as r:
                        assert r.status == 401
                async with http.ws_connect(url + '/ws') as ws:
                    page = ''
                    while not page:
                        message = json.loads((await ws.receive(timeout=HANG_GUARD)).data)
                        page = message['id'] if message['type'] == 'page' else ''
                    reading = asyncio.ensure_future(drain(ws))  # a page answers pings
                    photo = png(2048, 1536)  # about the largest RGB PNG decoded
                    codes = []
                    for _ in range(6):  # bursts of 4 at once: 2 are read, 2 asked to wait
                        posts = [http.post(f'{url}/api/upload?cloth_type=upper&page={page}',
                                           data=photo) for _ in range(4)]
                        for response in await asyncio.gather(*posts):
                            codes.append((response.status, await response.text()))
                    reading.cancel()
                    return codes

        answers = asyncio.run(serve_a_page())
        codes = [code for code, _ in answers]
        assert set(codes) <= {200, 429} and codes.count(200) >= 6, answers
        assert rss_mib(proc.pid) <= 250.0
        assert 'Traceback' not in proc.log()
    finally:
        if client is not None:
            client.close()
        assert proc.stop() == 0, proc.log()
