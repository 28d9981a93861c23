"""
tryon_server against hostile and careless clients, in real processes over loopback DDS.

A flood of goals from several processes, clients that die mid-goal, late result requests,
tiny and absurd images, and goal strings that try to forge or flood the server's log; the
mirror page's node (mirror_ui) as a client of a server that lost a result, fed hostile
page inputs.
"""

import asyncio
import json
import os
from pathlib import Path
import re
import signal
import subprocess
import time

from aiohttp import ClientSession, WSMsgType
import cv2
import numpy as np
import pytest
from rosutil import ActionClient, free_domain_id, HANG_GUARD, LIB, node_argv, Proc, ROOT, \
    ros_env, script_argv, Spinner
from sensor_msgs.msg import Image
from stack import person_goal, server_params
from vton_interfaces.action import TryOn
from vton_ros.media import samples
from vton_ros.nodes import action_qos, image_conv

pytestmark = pytest.mark.stack  # node processes: not in make check

R = TryOn.Result
ABORTED, SUCCEEDED = 6, 4  # action_msgs GoalStatus
PROCESSES = ROOT / 'test' / 'processes'
LATE = 11.0  # seconds: results asked for after rclpy's default result_timeout (10 s)


class Server:
    """tryon_server alone (goals bring their person images) in its own ROS domain."""

    def __init__(self, tmp: Path, weights: Path, **params) -> None:
        self.tmp = tmp
        self.env = ros_env(free_domain_id())
        self.proc = Proc(node_argv('tryon_server', dict(server_params(weights), **params)),
                         self.env, tmp / 'server.log')
        self.proc.wait_for_log('model loaded', timeout=HANG_GUARD)

    def usage(self) -> dict:
        """Return the server process's resident memory (MB), open fds and threads now."""
        status = Path(f'/proc/{self.proc.pid}/status').read_text()
        fields = dict(line.split(':', 1) for line in status.splitlines())
        return {'rss_mb': int(fields['VmRSS'].split()[0]) / 1024,
                'fds': len(os.listdir(f'/proc/{self.proc.pid}/fd')),
                'threads': int(fields['Threads'])}


@pytest.fixture(scope='module')
def queue_server(tmp_path_factory, tiny_weights):
    server = Server(tmp_path_factory.mktemp('hostile'), tiny_weights,
                    **{'tryon.busy_policy': 'queue', 'tryon.queue_size': 4})
    yield server
    assert server.proc.stop() == 0, server.proc.log()[-3000:]


@pytest.fixture()
def client(queue_server):
    """Yield a test-side action client, destroyed after the test (none left behind)."""
    spinner = Spinner('hostile_test_client', int(queue_server.env['ROS_DOMAIN_ID']))
    action = ActionClient(spinner.node, TryOn, 'tryon', **action_qos.client_options())
    assert action.wait_for_server(timeout_sec=HANG_GUARD)
    yield spinner, action
    spinner.executor.shutdown()  # stop spinning before the action client goes
    action.destroy()  # its goal writer must leave the graph: the dead-client test counts
    spinner.close()


def send(client, goal: TryOn.Goal):
    """Send a goal and return its result response (status, result)."""
    spinner, action = client
    handle = spinner.wait(action.send_goal_async(goal))
    assert handle.accepted
    return spinner.wait(handle.get_result_async())


def test_flood_of_goals_from_four_processes_every_request_answered(queue_server, tmp_path):
    go = tmp_path / 'go'
    before = queue_server.usage()
    # Each client asks for its results LATE seconds after its last goal ended: still kept.
    clients = [Proc(script_argv(PROCESSES / 'flood_client.py', '50', go, '--late', str(LATE)),
                    queue_server.env, tmp_path / f'client{i}.log') for i in range(4)]
    try:
        for client in clients:
            client.wait_for_log('ready', timeout=HANG_GUARD)
        go.touch()
        for client in clients:
            assert client.popen.wait(HANG_GUARD) == 0, client.log()
    finally:
        for client in clients:
            client.stop()
    after = queue_server.usage()
    summaries = [json.loads(c.log().strip().splitlines()[-1]) for c in clients]
    totals = {k: sum(s[k] for s in summaries) for k in ('answered', 'accepted', 'rejected')}
    print(f'flood 4 x 50: {totals}, lost {200 - totals["answered"]}; server before '
          f'{before}, after {after}')
    for summary in summaries:
        assert summary['answered'] == 50, summary  # accepted or rejected, none lost
        assert summary['results'] == summary['accepted'], summary
        assert set(summary['codes']) <= {R.SUCCESS}, summary
        assert set(summary['statuses']) <= {SUCCEEDED}, summary
    assert totals['accepted'] >= 5 and totals['rejected'] > 0, totals  # 1 runs, 4 queue
    log = queue_server.proc.log()
    assert log.count('ended SUCCESS') >= totals['accepted']


FORGED = 'x\n[ERROR] [1.0] [tryon_server]: forged\r[FATAL] also forged\x1b[2J'
HOSTILE = {
    'forged garment id': ({'garment_image': Image(), 'garment_id': FORGED},
                          R.INVALID_ARGUMENT, 'control character'),
    'forged cloth type': ({'cloth_type': FORGED}, R.INVALID_ARGUMENT, 'control character'),
    'huge garment id': ({'garment_image': Image(), 'garment_id': 'G' * 100_000},
                        R.INVALID_ARGUMENT, '100000 characters long'),
    'huge cloth type': ({'cloth_type': 'C' * 100_000}, R.INVALID_ARGUMENT,
                        '100000 characters long'),
    'huge encoding': ({'person_image': Image(width=64, height=64, encoding='E\n' * 50_000,
                                             step=192, data=bytes(192 * 64))},
                      R.INVALID_IMAGE, 'unsupported image encoding'),
    '1x1 person': ({'person_image': image_conv.from_rgb(np.zeros((1, 1, 3), np.uint8))},
                   R.INVALID_IMAGE, 'too small'),
    '8x8 person': ({'person_image': image_conv.from_rgb(np.zeros((8, 8, 3), np.uint8))},
                   R.INVALID_IMAGE, 'too small'),
    '4000x1 person': ({'person_image': image_conv.from_rgb(np.zeros((1, 4000, 3), np.uint8))},
                      R.INVALID_IMAGE, 'too small'),
    '8x8 mask': ({'mask': image_conv.from_mono(np.full((8, 8), 255, np.uint8))},
                 R.INVALID_IMAGE, 'too small'),
    '16x16 garment': ({'garment_image': image_conv.from_rgb(np.zeros((16, 16, 3), np.uint8))},
                      R.INVALID_IMAGE, 'too small'),
    '1000x100 person': ({'person_image': image_conv.from_rgb(
        np.zeros((100, 1000, 3), np.uint8))},
                        R.INVALID_IMAGE, 'too elongated'),
}


def test_hostile_strings_and_images_are_refused_and_never_reach_the_log_raw(queue_server,
                                                                            client):
    for case, (fields, code, words) in HOSTILE.items():
        response = send(client, person_goal(**fields))
        result = response.result
        assert (response.status, result.error_code) == (ABORTED, code), (case, result.message)
        assert words in result.message, (case, result.message)
        assert len(result.message) < 1000 and result.message.isprintable(), case
    assert send(client, person_goal()).result.error_code == R.SUCCESS  # still serving
    log = queue_server.proc.log()
    assert '\x1b' not in log and 'forged' in log  # escaped, not dropped
    for line in log.splitlines():
        assert 'forged' not in line or 'x\\n[ERROR]' in line, line
        assert len(line) < 2000, line[:200]


def test_goals_of_a_killed_client_end_client_gone_and_the_next_goal_runs(queue_server,
                                                                         tmp_path):
    victim = Proc(script_argv(PROCESSES / 'victim_client.py', '2', '1000'), queue_server.env,
                  tmp_path / 'victim.log')
    try:
        out = victim.wait_for_log('running', timeout=HANG_GUARD)
    finally:
        victim.kill()
        killed = time.monotonic()
        victim.stop()
    ids = [line.split()[1][:8] for line in out.splitlines() if line.startswith('accepted')]
    assert len(ids) == 2, out  # one runs, one waits in the queue
    server = queue_server.proc
    server.wait_for_log('its client left', timeout=HANG_GUARD)
    noticed = time.monotonic() - killed
    for goal_id in ids:
        server.wait_for_log(f'goal {goal_id} ended CLIENT_GONE', timeout=HANG_GUARD)
    ended = time.monotonic() - killed
    print(f'client killed: its goals stopped after {noticed:.2f} s, both ended after '
          f'{ended:.2f} s')
    go = tmp_path / 'go'
    go.touch()
    nxt = Proc(script_argv(PROCESSES / 'flood_client.py', '1', go), queue_server.env,
               tmp_path / 'next.log')
    assert nxt.popen.wait(HANG_GUARD) == 0, nxt.log()
    summary = json.loads(nxt.log().strip().splitlines()[-1])
    assert summary['accepted'] == 1 and summary['codes'] == [R.SUCCESS], summary


def test_bringup_names_the_signal_that_killed_a_node(tmp_path):
    env = ros_env(free_domain_id())
    # --native-logs: mediapipe's warnings (W0000 ...) are the node's last lines, not a reason
    bringup = Proc([LIB / 'tryon_bringup', '--nodes', 'camera_node,segmentation_node',
                    '--set', 'segmentation.device=cpu', '--set', 'camera.fps=4.0',
                    '--native-logs'], env, tmp_path / 'bringup.log')
    try:
        bringup.wait_for_log('ready on cpu', timeout=HANG_GUARD)
        bringup.wait_for_log('W0000', timeout=HANG_GUARD)  # the flag kept them
        pid = int(re.search(r'started segmentation_node \(pid (\d+)\)', bringup.log())[1])
        os.kill(pid, signal.SIGKILL)
        code = bringup.popen.wait(HANG_GUARD)
    finally:
        bringup.stop()
    log = bringup.log()
    assert code == 1, log
    assert 'tryon_bringup: segmentation_node killed by SIGKILL; stopping the others' in log, log
    assert 'all nodes stopped' in log


@pytest.fixture()
def client_files(tmp_path):
    """Write a person photo and a garment image; return tryon_client's arguments."""
    person, garment = tmp_path / 'person.png', tmp_path / 'garment.png'
    cv2.imwrite(str(person), cv2.cvtColor(samples.portrait('astronaut')[::4, ::4],
                                          cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(garment), cv2.cvtColor(samples.garment('tshirt'), cv2.COLOR_RGB2BGR))
    return ['--person', person, '--garment', garment, '--out', tmp_path / 'out.png']


def raw_server(tmp_path, mode: str) -> tuple[Proc, dict]:
    """Start raw_action_server.py in its own domain; return it (serving) and the env."""
    env = ros_env(free_domain_id())
    server = Proc(script_argv(PROCESSES / 'raw_action_server.py', mode), env,
                  tmp_path / 'raw_server.log')
    server.wait_for_log('ready', timeout=HANG_GUARD)
    return server, env


def test_tryon_client_cancels_a_goal_interrupted_before_its_acceptance(tmp_path,
                                                                       client_files):
    server, env = raw_server(tmp_path, 'slow_accept')
    client = Proc([LIB / 'tryon_client', *client_files], env, tmp_path / 'client.log')
    try:
        received = server.wait_for_log('goal received', timeout=HANG_GUARD)
        assert 'goal accepted' not in received
        os.killpg(client.pid, signal.SIGINT)  # Ctrl-C while the acceptance is on its way
        code = client.popen.wait(HANG_GUARD)
    finally:
        client.stop()
        server.stop()
    log, served = client.log(), server.log()
    assert code == 0, log
    assert 'canceling the goal' in log and 'CANCELED' in log, log
    goal_id = re.search(r'goal received (\w+)', served)[1]
    assert served.index('goal accepted') < served.index(f'cancel for {goal_id}'), served
    assert not (tmp_path / 'out.png').exists()


def write_shop(folder: Path) -> None:
    """Write a catalogue of one garment and an image whose name tries to forge a log line."""
    folder.mkdir()
    bgr = cv2.cvtColor(samples.garment('tshirt', height=64, width=48), cv2.COLOR_RGB2BGR)
    for name in ('red_shirt', FORGED):
        cv2.imwrite(str(folder / 'tmp.png'), bgr)
        (folder / 'tmp.png').rename(folder / f'{name}.png')


async def drive_page(url: str, photo: bytes) -> tuple[tuple, dict]:
    """
    Send the page's hostile inputs, then try a garment; return the upload's answer.

    Returns ((HTTP status, body) of an upload with a forged cloth type, the page's state
    once the try-on ended).
    """
    async with ClientSession() as http:
        ws = await http.ws_connect(url + 'ws')
        page = ''

        async def state(wanted: tuple) -> dict:
            nonlocal page
            while True:
                msg = await ws.receive(timeout=HANG_GUARD)
                assert msg.type in (WSMsgType.TEXT, WSMsgType.BINARY), msg
                data = json.loads(msg.data) if msg.type == WSMsgType.TEXT else {}
                page = data['id'] if data.get('type') == 'page' else page
                if data.get('type') == 'state' and data['state'] in wanted:
                    return data

        await state(('idle',))  # the action server is there
        async with http.post(url + 'api/upload', params={'cloth_type': FORGED, 'page': page},
                             data=photo) as response:  # an upload of this page's
            upload = (response.status, await response.text())
        while (await ws.receive(timeout=HANG_GUARD)).type != WSMsgType.BINARY:
            pass  # a camera frame: the mirror has a picture to send
        for command in ({'type': 'try', 'garment': FORGED}, {'type': FORGED}, FORGED + '{'):
            await ws.send_str(command if isinstance(command, str) else json.dumps(command))
        await ws.send_str(json.dumps({'type': 'try', 'garment': 'red_shirt'}))
        ended = await state(('error', 'result'))
        await ws.close()
    return upload, ended


def test_our_clients_report_an_expired_result_as_an_error(tmp_path, client_files):
    server, env = raw_server(tmp_path, 'expired')
    write_shop(tmp_path / 'shop')
    page = Proc(node_argv('mirror_ui', {'ui.port': 0, 'garments.catalog_dir': str(
        tmp_path / 'shop')}), env, tmp_path / 'mirror_ui.log')
    (tmp_path / 'frames').mkdir()
    (tmp_path / 'frames' / 'person.png').write_bytes(Path(client_files[1]).read_bytes())
    camera = Proc(node_argv('camera_node', {'camera.source': str(tmp_path / 'frames'),
                                            'camera.fps': 5.0}), env, tmp_path / 'camera.log')
    try:
        run = subprocess.run([LIB / 'tryon_client', *client_files], env=env,
                             capture_output=True, text=True, timeout=HANG_GUARD)
        url = re.search(r'mirror page at (http://\S+/)',
                        page.wait_for_log('mirror page at', HANG_GUARD))[1]
        photo = cv2.imencode('.png', np.full((64, 48, 3), 90, np.uint8))[1].tobytes()
        upload, ended = asyncio.run(drive_page(url, photo))
    finally:
        assert page.stop() == 0, page.log()
        camera.stop()
        server.stop()
    assert run.returncode == 6, run.stdout + run.stderr  # the server forgot the goal
    assert 'status UNKNOWN' in run.stderr and 'tryon.result_timeout' in run.stderr
    assert not (tmp_path / 'out.png').exists()
    # The page: the expired result is an error, never a success; its inputs stay inert.
    assert (ended['state'], ended.get('code')) == ('error', 'UNKNOWN'), ended
    assert upload[0] == 400 and 'forged' not in upload[1], upload
    log = page.log()
    assert '\x1b' not in log and 'x\\n[ERROR]' in log, log  # the file name, escaped
    for line in log.splitlines():
        assert 'forged' not in line or 'x\\n[ERROR]' in line, line
