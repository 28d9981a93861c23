"""
The mirror on its own host, a robot on the LAN: tryon_bringup --lan across network namespaces.

Three hosts made by the test (root): "mirror" runs the stack with ``--lan`` on its link to
"robot"; "robot" runs tryon_client and plain rclpy action clients with its own copy of the
shipped profile template (config/fastdds_lan.xml, the mirror as its initial peer); "other"
sits on a second link of the mirror and must see nothing. Real processes, real UDP between
the namespaces' private addresses, tiny random weights.
"""

import json
from pathlib import Path
import re
import subprocess
import sys
import time

import cv2
from netns import Hosts, require_netns
import pytest
from rosutil import free_domain_id, HANG_GUARD, LIB, Proc, process_udp_addresses, ROOT, \
    ros_env
from stack import server_params

from vton_ros.settings import dds
from vton_ros.settings import files as param_files

pytestmark = [pytest.mark.stack, pytest.mark.slow]  # node processes in namespaces
PROCESSES = ROOT / 'test' / 'processes'
ROBOT_NET, OTHER_NET = '10.77.1', '10.77.2'
MIRROR, ROBOT = f'{ROBOT_NET}.1', f'{ROBOT_NET}.2'
CAMERA = (640, 480)  # the result is a camera-sized rgb8 image: 0.9 MB on the wire


def stack_file(path: Path, weights: Path) -> str:
    """Parameters of the mirror's stack: a 640x480 camera, tiny weights at 64x48, 3 steps."""
    server = {k: str(v) for k, v in server_params(weights).items()
              if k.startswith(('catvton.base_model', 'catvton.vae', 'catvton.attn_ckpt'))}
    server.update({'catvton.device': 'cpu', 'catvton.precision': 'fp32',
                   'catvton.height': 64, 'catvton.width': 48, 'catvton.num_inference_steps': 3,
                   'segmentation.device': 'cpu', 'tryon.pair_wait': HANG_GUARD,
                   'tryon.pair_max_age': HANG_GUARD, 'tryon.preview_every': 1})
    path.write_text(param_files.dump_yaml({
        'camera_node': {'camera.fps': 4.0, 'camera.width': CAMERA[0],
                        'camera.height': CAMERA[1], 'camera.source': 'sample:astronaut'},
        'segmentation_node': {'segmentation.device': 'cpu', 'segmentation.max_rate': 4.0},
        'tryon_server': server}))
    return str(path)


def peer_profile(folder: Path, name: str, address: str, peers: tuple[str, ...]) -> str:
    """Write another host's copy of the shipped template (as a robot team would)."""
    template = (ROOT / 'config' / dds.LAN_TEMPLATE).read_text()
    path = folder / f'{name}.xml'
    path.write_text(dds.lan_profile(template, address, peers))
    return str(path)


def node_pids(bringup: Proc) -> dict[str, int]:
    """Return {node: pid} from tryon_bringup's 'started NODE (pid N)' lines."""
    return {m[1]: int(m[2]) for m in re.finditer(r'started (\w+) \(pid (\d+)\)', bringup.log())}


@pytest.fixture(scope='module')
def hosts():
    require_netns()
    with Hosts('mirror', 'robot', 'other') as made:
        made.add_link('mirror', 'robot', ROBOT_NET)
        made.add_link('mirror', 'other', OTHER_NET)
        yield made


def start_mirror(hosts, tmp: Path, weights: Path, env: dict) -> Proc:
    """Start the stack on the mirror host, open to its link to the robot; wait for it."""
    argv = [LIB / 'tryon_bringup', '--params-file', stack_file(tmp / 'stack.yaml', weights),
            '--lan', hosts.iface('mirror', ROBOT_NET)]
    bringup = Proc(hosts.argv('mirror', argv), env, tmp / 'bringup.log')
    bringup.wait_for_log('model loaded', timeout=HANG_GUARD)
    bringup.wait_for_log('ready on cpu', timeout=HANG_GUARD)  # segmentation
    return bringup


def run_client(hosts, host: str, env: dict, tmp: Path, *args: str) -> dict:
    """Run tryon_client on ``host`` with a catalogue garment; return its JSON summary."""
    out = tmp / f'{host}_result.png'
    run = subprocess.run(hosts.argv(host, [LIB / 'tryon_client', '--garment',
                                           ROOT / 'garments' / 'red_tshirt.png', '--out', out,
                                           '--server-timeout', str(HANG_GUARD), '--json',
                                           *args]),
                         env=env, capture_output=True, text=True, timeout=2 * HANG_GUARD)
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    summary['image'] = cv2.imread(str(out))
    return summary


def test_a_robot_on_the_lan_drives_the_mirror_and_nothing_else_sees_it(
        hosts, tmp_path, tiny_weights):
    env = ros_env(free_domain_id())
    robot_env = dict(env, FASTDDS_DEFAULT_PROFILES_FILE=peer_profile(
        tmp_path, 'robot', ROBOT, (MIRROR,)))
    other_env = dict(env, FASTDDS_DEFAULT_PROFILES_FILE=peer_profile(
        tmp_path, 'other', f'{OTHER_NET}.2', (f'{OTHER_NET}.1',)))
    probe = Proc(hosts.argv('other', [sys.executable, PROCESSES / 'graph_probe.py']),
                 other_env, tmp_path / 'probe.log')
    try:
        bringup = start_mirror(hosts, tmp_path, tiny_weights, env)
    except BaseException:
        probe.stop()
        raise
    try:
        probe.wait_for_log('ready', timeout=HANG_GUARD)
        # goals, feedback and a camera-sized (MB) result cross the link
        summary = run_client(hosts, 'robot', robot_env, tmp_path)
        assert summary['image'].shape == (CAMERA[1], CAMERA[0], 3), summary
        # every socket of every node: the LAN address or loopback, nothing else
        pids = node_pids(bringup)
        assert set(pids) == {'camera_node', 'segmentation_node', 'tryon_server'}, pids
        for name, pid in pids.items():
            assert process_udp_addresses(pid) <= {MIRROR, '127.0.0.1'}, name
        # a remote client killed mid-goal: its goal ends CLIENT_GONE, the server goes on
        victim = Proc(hosts.argv('robot', [sys.executable, PROCESSES / 'victim_client.py',
                                           '1', '1000']), robot_env, tmp_path / 'victim.log')
        try:
            out = victim.wait_for_log('running', timeout=HANG_GUARD)
            goal = out.split()[1][:8]
            preview = re.search(r'running \(preview (\d+)x(\d+)\)', out)
            assert int(preview[1]) > 0 and int(preview[2]) > 0, out  # previews cross too
        finally:
            victim.kill()
            killed = time.monotonic()
            victim.stop()
        bringup.wait_for_log(f'goal {goal} ended CLIENT_GONE', timeout=HANG_GUARD)
        print(f'killed remote client: goal ended {time.monotonic() - killed:.1f} s later')
        # the link goes down during a goal: the goal ends, a client on the mirror's side
        # of the cut is still served
        victim = Proc(hosts.argv('robot', [sys.executable, PROCESSES / 'victim_client.py',
                                           '1', '1000']), robot_env, tmp_path / 'victim2.log')
        try:
            goal = victim.wait_for_log('running', timeout=HANG_GUARD).split()[1][:8]
            hosts.set_link('robot', ROBOT_NET, up=False)
            cut = time.monotonic()
            bringup.wait_for_log(f'goal {goal} ended', timeout=HANG_GUARD)
            print(f'link down: goal ended {time.monotonic() - cut:.1f} s later')
            local = run_client(hosts, 'mirror', env, tmp_path)
            assert local['image'].shape == (CAMERA[1], CAMERA[0], 3), local
        finally:
            hosts.set_link('robot', ROBOT_NET, up=True)
            victim.stop()
    finally:
        probe.stop()
        assert bringup.stop() == 0, bringup.log()[-3000:]
    seen = json.loads(probe.log().strip().splitlines()[-1])
    assert not [t for t in seen if 'tryon' in t or 'image_raw' in t], seen


def test_the_discovery_server_joins_robot_and_mirror_and_a_restart_is_survived(
        hosts, tmp_path, tiny_weights):
    server_argv = hosts.argv('mirror', ['fastdds', 'discovery', '-l', MIRROR, '-p', '11811'])
    env = ros_env(free_domain_id(), ROS_DISCOVERY_SERVER=f'{MIRROR}:11811')
    # the robot names no peer: only the Discovery Server can introduce it to the mirror
    robot_profile = peer_profile(tmp_path, 'robot_ds', ROBOT, ())
    robot_env = dict(env, FASTDDS_DEFAULT_PROFILES_FILE=robot_profile)
    server = Proc(server_argv, env, tmp_path / 'discovery.log')
    bringup = None
    try:
        server.wait_for_log('Server started', timeout=HANG_GUARD)
        bringup = start_mirror(hosts, tmp_path, tiny_weights, env)
        first = run_client(hosts, 'robot', robot_env, tmp_path)
        assert first['image'].shape == (CAMERA[1], CAMERA[0], 3)
        server.kill()
        server.stop()
        server = Proc(server_argv, env, tmp_path / 'discovery2.log')
        server.wait_for_log('Server started', timeout=HANG_GUARD)
        restarted = time.monotonic()
        again = run_client(hosts, 'robot', robot_env, tmp_path)  # a new robot participant
        print(f'Discovery Server restart: a new robot found the mirror and got its result '
              f'{time.monotonic() - restarted:.1f} s later')
        assert again['image'].shape == (CAMERA[1], CAMERA[0], 3)
    finally:
        if bringup is not None:
            assert bringup.stop() == 0, bringup.log()[-3000:]
        server.stop()
