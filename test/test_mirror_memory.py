"""
mirror_ui's memory: its own small Fast DDS segment, the bounds on uploads, and its RSS.

The last test runs the demo stack (camera at 640x480 and 15 fps, segmentation, the demo
server, mirror_ui) on 127.0.0.1, opens a page that reads the live view and sends a bounded
burst of the largest uploads mirror_ui accepts; the real process's RSS (from /proc) must
stay at or under 250 MiB throughout and after it (a resource bound, not a speed).
"""

import asyncio
import io
import json
import re
import threading

from aiohttp import ClientSession, WSMsgType
import numpy as np
from pages import SERVER, SHOP
from PIL import Image
import pytest
from rosutil import free_domain_id, HANG_GUARD, node_argv, Proc, ROOT, ros_env, wait_until

from vton_ros.settings import dds
from vton_ros.ui import images
from vton_ros.ui.catalog import Garments

RSS_BOUND_MIB = 250.0
LOOPBACK = ROOT / 'config' / 'fastdds_loopback.xml'


def test_mirror_ui_gets_the_profile_in_force_with_a_small_segment():
    text = LOOPBACK.read_text()
    sized = dds.sized_profile(text, 16 << 20)
    assert '<segment_size>16777216</segment_size>' in sized
    assert sized.replace('16777216', '67108864') == text  # nothing else changed
    assert dds.sized_profile(text, 1 << 30) == text  # never larger
    udp_only = {dds.FASTDDS_PROFILE_ENV: str(ROOT / 'config' / 'fastdds_loopback_udp.xml')}
    assert dds.write_sized_profile(udp_only, 16 << 20) is None  # no segment: nothing to do
    assert dds.write_sized_profile({}, 16 << 20) is None
    path = dds.write_sized_profile({dds.FASTDDS_PROFILE_ENV: str(LOOPBACK)}, 16 << 20)
    try:
        assert path.read_text() == sized and path.parent.stat().st_mode & 0o077 == 0
    finally:
        dds.remove_profile(path)
    assert not path.parent.exists()


def photo(fmt: str, mode: str, width: int, height: int) -> bytes:
    """Return a smooth photo-like image (noise enlarged) of that size, encoded."""
    rng = np.random.default_rng(width * height)
    small = rng.integers(0, 255, (max(2, height // 64), max(2, width // 64), len(mode)),
                         np.uint8)
    image = Image.fromarray(small, mode).resize((width, height), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def largest(fmt: str, mode: str) -> bytes:
    """Return the largest 4:3 photo of that kind that decode_upload accepts."""
    low, high = 64, 4096
    while high - low > 16:
        mid = (low + high) // 2
        buf = io.BytesIO()
        Image.new(mode, (mid, mid * 3 // 4)).save(buf, fmt)  # the same header, quickly
        with Image.open(buf) as image:
            images.draft(image)
            fits = images.decode_cost(image) <= images.MAX_DECODE_BYTES
        low, high = (mid, high) if fits else (low, mid)
    data = photo(fmt, mode, low, low * 3 // 4)
    assert images.decode_upload(data, 4096 * 4096).shape[1] == images.UPLOAD_SIDE
    return data


def test_the_decode_bound_names_its_limit_and_kept_photos_are_bounded_in_all():
    data = photo('WEBP', 'RGB', 2000, 1500)  # 3 MP of WebP: ~55 MB while decoded
    with pytest.raises(ValueError, match=r'too large \(2000x1500 decoded\); send at most 1\.'):
        images.decode_upload(data, 4096 * 4096)
    assert images.decode_upload(photo('JPEG', 'RGB', 4000, 3000), 4096 * 4096).shape == \
        (768, 1024, 3)  # a 12 MP phone photo: decoded at half its size
    garments = Garments(max_uploads=2, max_kept=3)
    small = photo('PNG', 'RGB', 64, 48)
    first = garments.add_upload(small, 'upper', 'page-a')['id']
    for page in ('page-b', 'page-c', 'page-d'):
        garments.add_upload(small, 'upper', page)
    assert garments.get(first, 'page-a') is None  # the oldest of any page went
    assert [len(garments.items(p)) for p in ('page-b', 'page-c', 'page-d')] == [1, 1, 1]


def status(pid: int) -> dict:
    """Return VmRSS and VmHWM of a process in MiB."""
    values = {}
    with open(f'/proc/{pid}/status') as lines:
        for line in lines:
            key, _, value = line.partition(':')
            if key in ('VmRSS', 'VmHWM'):
                values[key] = int(value.split()[0]) / 1024
    return values


async def burst(url: str, uploads: list, rounds: int = 3) -> list:
    """Open a page that reads the live view; send each upload 4 at once, ``rounds`` times."""
    async with ClientSession() as http:
        async with http.ws_connect(url + 'ws') as ws:
            page, frames = '', 0
            while not page or not frames:  # a page id and a live frame: it serves
                msg = await ws.receive(timeout=HANG_GUARD)
                assert msg.type in (WSMsgType.TEXT, WSMsgType.BINARY), msg
                if msg.type == WSMsgType.TEXT and json.loads(msg.data)['type'] == 'page':
                    page = json.loads(msg.data)['id']
                frames += msg.type == WSMsgType.BINARY
            reading = asyncio.ensure_future(_drain(ws))
            codes = []
            for data in uploads:
                for _ in range(rounds):
                    posts = [http.post(f'{url}api/upload?cloth_type=upper&page={page}',
                                       data=data) for _ in range(4)]
                    for response in await asyncio.gather(*posts):
                        codes.append((len(data), response.status, await response.text()))
            reading.cancel()
            return codes


async def _drain(ws) -> None:
    while (await ws.receive()).type not in (WSMsgType.CLOSE, WSMsgType.CLOSED,
                                            WSMsgType.ERROR):
        pass


@pytest.mark.stack
def test_mirror_ui_stays_under_250_mib_through_a_burst_of_the_largest_uploads(tmp_path):
    noise = np.random.default_rng(5).integers(0, 255, (1425, 1900, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, 'PNG')  # 7.8 MiB: about the largest body accepted
    uploads = [largest('PNG', 'RGB'), largest('PNG', 'RGBA'), largest('WEBP', 'RGB'),
               photo('JPEG', 'RGB', 4096, 4096), buf.getvalue()]  # JPEG: the most pixels
    env = ros_env(free_domain_id())
    procs = [Proc(node_argv('camera_node', {
        'camera.source': 'sample:astronaut', 'camera.fps': 15.0, 'camera.width': 640,
        'camera.height': 480}), env, tmp_path / 'camera.log')]
    try:
        procs.append(Proc(node_argv('segmentation_node', {
            'segmentation.max_rate': 5.0, 'segmentation.device': 'cpu'}), env,
            tmp_path / 'segmentation.log'))
        procs.append(Proc(node_argv('tryon_server', dict(
            SERVER, **{'garments.catalog_dir': str(SHOP)})), env, tmp_path / 'server.log'))
        ui = Proc(node_argv('mirror_ui', {'ui.port': 0, 'garments.catalog_dir': str(SHOP)}),
                  env, tmp_path / 'mirror_ui.log')
        procs.append(ui)
        url = re.search(r'mirror page at (http://127\.0\.0\.1:\d+/)',
                        ui.wait_for_log('mirror page at')).group(1)
        procs[2].wait_for_log('model loaded')
        peak = [0.0]
        done = threading.Event()

        def sample() -> None:  # VmHWM below is the exact peak; this, where it cannot reset
            while not done.wait(0.01):
                peak[0] = max(peak[0], status(ui.pid)['VmRSS'])

        sampler = threading.Thread(target=sample, daemon=True)
        with open(f'/proc/{ui.pid}/clear_refs', 'w') as refs:
            refs.write('5')  # VmHWM := VmRSS now
        sampler.start()
        try:
            codes = asyncio.run(burst(url, uploads))
        finally:
            done.set()
            sampler.join()
        high = max(peak[0], status(ui.pid)['VmHWM'])
        assert {code for _, code, _ in codes} <= {200, 429}, codes
        for data in uploads:
            assert (len(data), 200, ) in {c[:2] for c in codes}, (len(data), codes)
        assert high <= RSS_BOUND_MIB, f'mirror_ui peaked at {high:.0f} MiB'
        wait_until(lambda: status(ui.pid)['VmRSS'] <= RSS_BOUND_MIB, HANG_GUARD,
                   lambda: f'mirror_ui back at or under 250 MiB ({status(ui.pid)})')
        assert 'Traceback' not in ui.log()
    finally:
        codes_at_exit = [proc.stop() for proc in reversed(procs)]
    assert codes_at_exit == [0] * len(procs), [p.log()[-2000:] for p in procs]
