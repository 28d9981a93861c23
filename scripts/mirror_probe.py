"""
Benchmark of the mirror page under abuse (not a test): what one hostile client can cost it.

Starts what `make mirror` starts (tryon_bringup --ui: the stack on the demo model, mirror_ui
with an access token on 127.0.0.1) in its own ROS domain and aims every probe at 127.0.0.1
only (the attacker's connections come from 127.0.0.2, another loopback address); every
loop is bounded in count and time. Headline figures (printed, and written to probe.json):
- idle TCP connections held open after --hold seconds (of --idle opened), and whether a
  client with the token is still answered meanwhile;
- log bytes written per 10 s of: non-UTF-8 token headers, malformed and unknown WebSocket
  commands, aborted uploads; whether JSON nested 2000 deep reached the log as a traceback;
- mirror_ui's RSS (MiB): idle, peak during a burst of small uploads that declare
  4096x4096 pixels, and after it; the peak (VmHWM) of a burst of the largest photos it
  accepts (RGB PNG, RGBA PNG, WebP); with --slow pages that never read during try-ons (RSS
  and the kernel's send queue);
- the live view's frame rate in an honest page alone and with --deflate clients that ask
  for permessage-deflate (and whether the server agreed to compress);
- smaller checks: the token readable as a ROS parameter, TIFF/GIF uploads, the too-large
  message, an Origin of another scheme, an HTTP/1.0 request without Host.

    source scripts/env.sh && python scripts/mirror_probe.py --out out/mirror_probe
"""

import argparse
import asyncio
import io
import json
import os
from pathlib import Path
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import time

from aiohttp import ClientError, ClientSession, TCPConnector, WSMsgType
import numpy as np
from PIL import Image

from vton_ros.settings import schema
from vton_ros.ui import images

ROOT = Path(__file__).resolve().parents[1]
TOKEN = 'probe-' + os.urandom(8).hex()
HOST = '127.0.0.1'
ATTACKER = '127.0.0.2'  # a second loopback source address: another client to the server


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('--out', default='out/mirror_probe', help='folder for the results')
    parser.add_argument('--idle', type=int, default=2000, help='idle TCP connections opened')
    parser.add_argument('--hold', type=float, default=20.0,
                        help='seconds the idle connections are held before they are counted')
    parser.add_argument('--flood', type=float, default=10.0, help='seconds of each log flood')
    parser.add_argument('--uploads', type=int, default=24, help='uploads in the burst')
    parser.add_argument('--slow', type=int, default=30, help='pages that never read')
    parser.add_argument('--deflate', type=int, default=50, help='deflate clients')
    parser.add_argument('--profile', default='cpu,demo', help="tryon_bringup's --profile")
    parser.add_argument('--set', action='append', default=[], metavar='NAME=VALUE',
                        help="more of tryon_bringup's --set (repeatable)")
    parser.add_argument('--steps', type=int, default=8, help='denoising steps per try-on')
    return parser


class Stack:
    """scripts/mirror.sh in a process group, mirror_ui's pid and URL from its log."""

    def __init__(self, out: Path, profile: str, sets: list[str]) -> None:
        env = dict(os.environ, PORT='0', ROS_DOMAIN_ID=str(random.SystemRandom().randint(1, 200)))
        extra = []
        if 'ui.token_file' in {p.name for p in schema.SCHEMA}:
            token_file = out.resolve() / 'token'
            token_file.write_text(TOKEN + '\n')
            token_file.chmod(0o600)
            extra = ['--set', f'ui.token_file={token_file}']
        else:
            extra = ['--set', f'ui.token={TOKEN}']
        self.env = env
        self.log = out / 'stack.log'
        self._file = open(self.log, 'w')
        self.popen = subprocess.Popen(
            ['tryon_bringup', '--ui', '--profile', profile, '--camera-source',
             'sample:astronaut', '--set', 'camera.fps=15.0', '--set', 'camera.width=640',
             '--set', 'camera.height=480', '--set', 'segmentation.max_rate=5.0',
             '--set', 'ui.port=0', '--set', f'catvton.num_inference_steps={STEPS}', *extra,
             *(a for pair in sets for a in ('--set', pair))],
            env=env, stdout=self._file, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            text = self.wait_for(r'mirror page at (http://\S+/)')
            self.url = re.search(r'mirror page at (http://\S+/)', text).group(1).rstrip('/')
            self.port = int(self.url.rsplit(':', 1)[1])
            self.ui_pid = int(re.search(r'started mirror_ui \(pid (\d+)\)', text).group(1))
            self.wait_for(r'loaded CatVTON|model loaded')
        except BaseException:
            self.stop()
            raise

    def wait_for(self, pattern: str, timeout: float = 600.0) -> str:
        """Wait until the log matches ``pattern``; return the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text(errors='replace')
            if re.search(pattern, text):
                return text
            if self.popen.poll() is not None:
                raise RuntimeError(f'the stack exited:\n{text[-3000:]}')
            time.sleep(0.2)
        raise TimeoutError(f'{pattern!r} not in the log after {timeout} s')

    def log_bytes(self) -> int:
        """Return the stack log's size (every node's output)."""
        self._file.flush()
        return self.log.stat().st_size

    def rss_mib(self) -> float:
        """Return mirror_ui's resident memory in MiB."""
        for line in Path(f'/proc/{self.ui_pid}/status').read_text().splitlines():
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self) -> float:
        """Return mirror_ui's user + system CPU seconds so far."""
        fields = Path(f'/proc/{self.ui_pid}/stat').read_text().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')

    def send_queue_bytes(self) -> int:
        """Return the kernel send queues of the server's TCP sockets (its port), in bytes."""
        total = 0
        for table in ('/proc/net/tcp', '/proc/net/tcp6'):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(':', 1)[1], 16) == self.port:
                    total += int(fields[4].split(':')[0], 16)
        return total

    def stop(self) -> int:
        """Ctrl-C the stack; return its exit code."""
        os.killpg(self.popen.pid, signal.SIGINT)
        try:
            code = self.popen.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            code = self.popen.wait(30)
        self._file.close()
        return code


STEPS = 8


READ_PARAMS = """
import rclpy
from rcl_interfaces.srv import GetParameters, ListParameters
rclpy.init()
node = rclpy.create_node('mirror_probe_reader')
def call(kind, name, request):
    client = node.create_client(kind, '/mirror_ui/' + name)
    client.wait_for_service(timeout_sec=30.0)
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=30.0)
    return future.result()
names = call(ListParameters, 'list_parameters', ListParameters.Request()).result.names
values = call(GetParameters, 'get_parameters', GetParameters.Request(names=names)).values
print([v.string_value for v in values])
"""


def raw_request(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes on a new connection; return what comes back until close or timeout."""
    chunks = []
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(data)
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError:
            pass
    return b''.join(chunks)


def status_of(reply: bytes) -> int:
    """Return the HTTP status code of a raw reply (0 = none)."""
    match = re.match(rb'HTTP/1\.[01] (\d{3})', reply)
    return int(match.group(1)) if match else 0


async def honest_get(url: str, timeout: float = 5.0) -> int:
    """GET a page with the token; return the status (0 = no answer in ``timeout``)."""
    try:
        async with ClientSession(headers={'X-Mirror-Token': TOKEN}) as http:
            return await asyncio.wait_for(_status(http, url + '/api/garments'), timeout)
    except (OSError, asyncio.TimeoutError):
        return 0


async def _status(http: ClientSession, url: str) -> int:
    async with http.get(url) as r:
        return r.status


def probe_idle(stack: Stack, args: argparse.Namespace) -> dict:
    """Open idle connections, hold them, count those the server kept."""
    socks, refused = [], 0
    deadline = time.monotonic() + 60
    for _ in range(args.idle):
        if time.monotonic() > deadline:
            break
        try:
            socks.append(socket.create_connection((HOST, stack.port), timeout=2.0,
                                                  source_address=(ATTACKER, 0)))
        except OSError:
            refused += 1
    honest_during = asyncio.run(honest_get(stack.url))
    log0 = stack.log_bytes()
    time.sleep(args.hold)
    held = 0
    for sock in socks:
        sock.setblocking(False)
        try:
            sock.recv(1, socket.MSG_PEEK)  # data or end: the server answered or closed it
        except BlockingIOError:
            held += 1  # nothing to read and not closed: still held open
        except OSError:
            pass
        sock.close()
    return {'opened': len(socks), 'refused_at_connect': refused,
            'held_after_s': args.hold, 'held': held,
            'honest_status_while_held': honest_during,
            'log_bytes_during_hold': stack.log_bytes() - log0}


def flood_bad_token(stack: Stack, seconds: float) -> dict:
    """Send requests with a non-UTF-8 token header or cookie, one per connection."""
    log0, sent, codes = stack.log_bytes(), 0, {}
    end = time.monotonic() + seconds
    while time.monotonic() < end and sent < 20000:
        header = b'X-Mirror-Token: \xff\xfe' if sent % 2 else b'Cookie: mirror_token=\xff\xfe'
        reply = raw_request(stack.port, b'GET /api/garments HTTP/1.1\r\nHost: ' +
                            f'{HOST}:{stack.port}'.encode() + b'\r\n' + header +
                            b'\r\nConnection: close\r\n\r\n')
        codes[status_of(reply)] = codes.get(status_of(reply), 0) + 1
        sent += 1
    return {'requests': sent, 'status_codes': codes,
            'log_bytes_per_10s': round((stack.log_bytes() - log0) * 10 / seconds)}


async def flood_ws_commands(stack: Stack, seconds: float) -> dict:
    """Malformed and unknown WebSocket commands as fast as one page can send them."""
    log0, sent = stack.log_bytes(), 0
    async with ClientSession(headers={'X-Mirror-Token': TOKEN}) as http:
        ws = await http.ws_connect(stack.url + '/ws', autoclose=False, max_msg_size=0)
        end = time.monotonic() + seconds
        while time.monotonic() < end and sent < 200000 and not ws.closed:
            for _ in range(200):
                await ws.send_str('{not json' if sent % 2 else '{"type": "launch"}')
                sent += 1
            await asyncio.sleep(0)
        closed_by_server = ws.closed
        await ws.close()
    await asyncio.sleep(1.0)
    return {'messages': sent, 'closed_by_server': closed_by_server,
            'log_bytes_per_10s': round((stack.log_bytes() - log0) * 10 / seconds)}


async def deep_json(stack: Stack) -> dict:
    """Send one command of JSON nested 2000 deep; tell whether a traceback was logged."""
    before = stack.log.read_text(errors='replace')
    async with ClientSession(headers={'X-Mirror-Token': TOKEN}) as http:
        ws = await http.ws_connect(stack.url + '/ws')
        await ws.send_str('[' * 2000 + ']' * 2000)
        await asyncio.sleep(2.0)
        await ws.close()
    new = stack.log.read_text(errors='replace')[len(before):]
    return {'traceback_in_log': 'Traceback' in new or 'RecursionError' in new}


def aborted_uploads(stack: Stack, count: int = 20) -> dict:
    """Cut uploads off mid-body with a reset (SO_LINGER 0)."""
    log0 = stack.log_bytes()
    for _ in range(count):
        sock = socket.create_connection((HOST, stack.port), timeout=5)
        sock.sendall(b'POST /api/upload?cloth_type=upper HTTP/1.1\r\nHost: ' +
                     f'{HOST}:{stack.port}'.encode() + b'\r\nX-Mirror-Token: ' + TOKEN.encode() +
                     b'\r\nContent-Type: image/png\r\nContent-Length: 1000000\r\n\r\n' +
                     b'\x89PNG' + b'\0' * 5000)
        time.sleep(0.05)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        sock.close()
    time.sleep(1.0)
    return {'aborted': count, 'log_bytes': stack.log_bytes() - log0}


def bomb_png(side: int = 4096) -> bytes:
    """Return a small PNG that declares side x side pixels (one colour: a few KB)."""
    buf = io.BytesIO()
    Image.new('RGB', (side, side), (120, 60, 200)).save(buf, 'PNG', optimize=False)
    return buf.getvalue()


def encoded(fmt: str) -> bytes:
    """Return a 256x256 photo in ``fmt`` (PIL format name)."""
    buf = io.BytesIO()
    rgb = np.random.default_rng(1).integers(0, 255, (256, 256, 3), np.uint8)
    Image.fromarray(rgb).save(buf, fmt)
    return buf.getvalue()


async def open_page(http: ClientSession, url: str) -> tuple:
    """Open a page's WebSocket, read in the background; return it, its id ('' = none)."""
    ws = await http.ws_connect(url + '/ws')
    page, end = '', time.monotonic() + 3.0
    while not page and time.monotonic() < end:
        try:
            msg = await ws.receive(timeout=max(0.01, end - time.monotonic()))
        except asyncio.TimeoutError:
            break
        if msg.type == WSMsgType.TEXT and json.loads(msg.data).get('type') == 'page':
            page = json.loads(msg.data)['id']
    return ws, page, asyncio.ensure_future(drain(ws))


async def drain(ws) -> None:
    """Read a WebSocket until it closes (pings answered, as a page does)."""
    while (await ws.receive()).type not in (WSMsgType.CLOSE, WSMsgType.CLOSED,
                                            WSMsgType.ERROR):
        pass


async def upload(http: ClientSession, url: str, data: bytes, page: str,
                 headers: dict | None = None) -> tuple[int, str]:
    """POST an upload of page ``page``; return the status and the error text (if any)."""
    async with http.post(f'{url}/api/upload?cloth_type=upper&page={page}', data=data,
                         headers=headers or {}) as r:
        body = await r.text()
        try:
            return r.status, json.loads(body).get('error', '')
        except ValueError:
            return r.status, body[:80]


async def upload_burst(stack: Stack, count: int, side: int = 4096) -> dict:
    """Send ``count`` small uploads declaring side x side at once; RSS peak and after."""
    data = bomb_png(side)
    rss0, peak = stack.rss_mib(), 0.0
    async with ClientSession(headers={'X-Mirror-Token': TOKEN}) as http:
        ws, page, reading = await open_page(http, stack.url)
        tasks = [asyncio.ensure_future(upload(http, stack.url, data, page))
                 for _ in range(count)]
        while not all(t.done() for t in tasks):
            peak = max(peak, stack.rss_mib())
            await asyncio.sleep(0.05)
        codes = [t.result()[0] for t in tasks]
        reading.cancel()
        await ws.close()
    await asyncio.sleep(5.0)
    return {'png_bytes': len(data), 'declared': f'{side}x{side}', 'uploads': count,
            'accepted': codes.count(200), 'rss_before_mib': round(rss0),
            'rss_peak_mib': round(peak), 'rss_after_mib': round(stack.rss_mib())}


def largest_accepted(fmt: str, mode: str) -> bytes:
    """Return the largest 4:3 photo of that kind mirror_ui decodes (images.decode_cost)."""
    low, high = 64, 4096
    while high - low > 16:
        mid, buf = (low + high) // 2, io.BytesIO()
        Image.new(mode, (mid, mid * 3 // 4)).save(buf, fmt)
        with Image.open(buf) as image:
            low, high = ((mid, high) if images.decode_cost(image) <= images.MAX_DECODE_BYTES
                         else (low, mid))
    small = np.random.default_rng(2).integers(0, 255, (low // 64, low // 64, len(mode)),
                                              np.uint8)
    buf = io.BytesIO()
    Image.fromarray(small, mode).resize((low, low * 3 // 4)).save(buf, fmt)
    return buf.getvalue()


async def largest_burst(stack: Stack, count: int) -> dict:
    """Each kind's largest accepted photo ``count`` times, 4 at once: RSS peak (VmHWM)."""
    kinds = {f'{fmt}_{mode}': largest_accepted(fmt, mode)  # before the page: it must read
             for fmt, mode in (('PNG', 'RGB'), ('PNG', 'RGBA'), ('WEBP', 'RGB'))}
    results = {'rss_before_mib': round(stack.rss_mib())}
    Path(f'/proc/{stack.ui_pid}/clear_refs').write_text('5')  # VmHWM := VmRSS
    async with ClientSession(headers={'X-Mirror-Token': TOKEN}) as http:
        ws, page, reading = await open_page(http, stack.url)
        for kind, data in kinds.items():
            codes = []
            for _ in range(count // 4):
                codes += await asyncio.gather(*(upload(http, stack.url, data, page)
                                                for _ in range(4)))
            size = Image.open(io.BytesIO(data)).size
            results[kind] = f'{size[0]}x{size[1]}: {[c for c, _ in codes].count(200)} accepted'
        reading.cancel()
        await ws.close()
    hwm = re.search(r'VmHWM:\s+(\d+)', Path(f'/proc/{stack.ui_pid}/status').read_text())
    results['rss_peak_mib'] = round(int(hwm.group(1)) / 1024)
    await asyncio.sleep(5.0)
    results['rss_after_mib'] = round(stack.rss_mib())
    return results


async def small_checks(stack: Stack) -> dict:
    """Check formats, messages, the origin scheme, HTTP/1.0 without Host."""
    results = {}
    async with ClientSession(headers={'X-Mirror-Token': TOKEN}) as http:
        ws, page, reading = await open_page(http, stack.url)
        for fmt in ('TIFF', 'GIF'):
            results[f'{fmt.lower()}_upload'] = (await upload(http, stack.url, encoded(fmt),
                                                             page))[0]
        big = bomb_png(8192)
        results['too_large_message'] = (await upload(http, stack.url, big, page))[1]
        origin = 'https' + stack.url[4:]
        results['other_scheme_origin_upload'] = (await upload(
            http, stack.url, encoded('PNG'), page, {'Origin': origin}))[0]
        reading.cancel()
        await ws.close()
    reply = raw_request(stack.port, b'GET /api/garments HTTP/1.0\r\nX-Mirror-Token: ' +
                        TOKEN.encode() + b'\r\n\r\n')
    results['http10_without_host'] = status_of(reply)
    got = subprocess.run([sys.executable, '-c', READ_PARAMS], env=stack.env,
                         capture_output=True, text=True, timeout=120)
    results['token_readable_as_ros_parameter'] = TOKEN in got.stdout
    return results


def attacker(index: int) -> str:
    """Return the loopback source address of attacking client ``index`` (8 per address)."""
    return f'127.0.0.{2 + index // 8}'


async def frames(url: str, seconds: float, compress: int = 0,
                 source: str = HOST) -> tuple[int, bool]:
    """Count live frames a page gets in ``seconds``; and whether deflate was agreed."""
    count = 0
    async with ClientSession(headers={'X-Mirror-Token': TOKEN},
                             connector=TCPConnector(local_addr=(source, 0))) as http:
        async with http.ws_connect(url + '/ws', compress=compress) as ws:
            agreed = bool(ws.compress)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    msg = await ws.receive(timeout=max(0.01, end - time.monotonic()))
                except asyncio.TimeoutError:
                    break
                if msg.type == WSMsgType.BINARY and msg.data[:1] == b'\x01':
                    count += 1
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
    return count, agreed


async def deflate_load(stack: Stack, clients: int, seconds: float = 15.0) -> dict:
    """Honest fps alone, then with ``clients`` deflate clients reading frames."""
    alone, _ = await frames(stack.url, seconds)
    cpu0, t0 = stack.cpu_seconds(), time.monotonic()
    tasks = [asyncio.ensure_future(frames(stack.url, seconds + 5, 15, attacker(i)))
             for i in range(clients)]
    await asyncio.sleep(2.0)
    honest, _ = await frames(stack.url, seconds)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    agreed = sum(1 for r in results if isinstance(r, tuple) and r[1])
    refused = sum(1 for r in results if isinstance(r, ClientError))
    return {'honest_fps_alone': round(alone / seconds, 1), 'deflate_clients': clients,
            'deflate_agreed': agreed, 'deflate_refused': refused,
            'honest_fps_with_deflate': round(honest / seconds, 1),
            'mirror_ui_cpu_percent': round(100 * (stack.cpu_seconds() - cpu0) /
                                           (time.monotonic() - t0))}


async def slow_readers(stack: Stack, count: int, tryons: int = 3) -> dict:
    """``count`` pages that never read, while an honest page runs try-ons."""
    rss0 = stack.rss_mib()
    socks = []
    for index in range(count):  # raw WebSocket handshakes, then never a read
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind((attacker(index), 0))
        sock.connect((HOST, stack.port))
        sock.sendall(f'GET /ws HTTP/1.1\r\nHost: {HOST}:{stack.port}\r\nUpgrade: websocket\r\n'
                     'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'
                     f'Sec-WebSocket-Version: 13\r\nX-Mirror-Token: {TOKEN}\r\n\r\n'.encode())
        socks.append(sock)
    done, closed = 0, False
    peaks = {'rss': 0.0, 'queue': 0}

    async def sample():
        while True:
            peaks['rss'] = max(peaks['rss'], stack.rss_mib())
            peaks['queue'] = max(peaks['queue'], stack.send_queue_bytes())
            await asyncio.sleep(0.25)

    sampling = asyncio.ensure_future(sample())
    async with ClientSession(headers={'X-Mirror-Token': TOKEN}) as http:
        async with http.ws_connect(stack.url + '/ws') as ws:
            end = time.monotonic() + 300
            garments = ('red_striped_shirt', 'green_dotted_shirt', 'blue_checked_shirt')
            while done < tryons and time.monotonic() < end and not closed:
                await ws.send_str(json.dumps({'type': 'try', 'garment': garments[done % 3]}))
                while time.monotonic() < end:
                    msg = await ws.receive(timeout=300)
                    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
                        closed = True
                        break
                    if msg.type != WSMsgType.TEXT:
                        continue
                    state = json.loads(msg.data)
                    if state.get('state') in ('result', 'error'):
                        done += 1
                        break
                if not closed:
                    await ws.send_str(json.dumps({'type': 'live'}))
    sampling.cancel()
    peak, queue = peaks['rss'], peaks['queue']
    dropped = 0
    for sock in socks:
        sock.setblocking(False)
        try:
            while sock.recv(65536):
                pass
        except BlockingIOError:
            pass
        except OSError:
            dropped += 1
        else:
            dropped += 1
    rss_with = stack.rss_mib()
    for sock in socks:
        sock.close()
    await asyncio.sleep(3.0)
    return {'slow_pages': count, 'tryons': done, 'honest_page_closed': closed,
            'rss_before_mib': round(rss0),
            'rss_peak_mib': round(peak), 'rss_while_held_mib': round(rss_with),
            'send_queue_peak_mib': round(queue / 2 ** 20, 1), 'dropped_by_server': dropped,
            'rss_after_leave_mib': round(stack.rss_mib())}


def main(argv: list[str] | None = None) -> int:
    """Run the probes; print and write probe.json."""
    global STEPS
    args = build_parser().parse_args(argv)
    STEPS = args.steps
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stack = Stack(out, args.profile, args.set)
    results: dict = {}
    try:
        time.sleep(3.0)
        results['rss_idle_mib'] = round(stack.rss_mib())
        probes = (('idle_connections', lambda: probe_idle(stack, args)),
                  ('bad_token_flood', lambda: flood_bad_token(stack, args.flood)),
                  ('ws_command_flood', lambda: asyncio.run(flood_ws_commands(stack, args.flood))),
                  ('deep_json', lambda: asyncio.run(deep_json(stack))),
                  ('aborted_uploads', lambda: aborted_uploads(stack)),
                  ('upload_burst', lambda: asyncio.run(upload_burst(stack, args.uploads))),
                  ('upload_burst_3000', lambda: asyncio.run(upload_burst(stack, args.uploads,
                                                                         3000))),
                  ('upload_burst_largest', lambda: asyncio.run(largest_burst(stack,
                                                                             args.uploads))),
                  ('small_checks', lambda: asyncio.run(small_checks(stack))),
                  ('deflate', lambda: asyncio.run(deflate_load(stack, args.deflate))),
                  ('slow_readers', lambda: asyncio.run(slow_readers(stack, args.slow))))
        for name, probe in probes:
            try:
                results[name] = probe()
            except (OSError, RuntimeError, ValueError, ClientError,
                    asyncio.TimeoutError) as err:
                results[name] = {'failed': f'{type(err).__name__}: {err}'}
        results['rss_end_mib'] = round(stack.rss_mib())
    finally:
        results['stack_exit'] = stack.stop()
        (out / 'probe.json').write_text(json.dumps(results, indent=2) + '\n')
    print(json.dumps(results, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
