"""
Benchmark of the LAN (not a test): bytes on the wire between a mirror and its robot.

Two hosts made here as Linux network namespaces (root): "mirror" runs tryon_bringup
--lan on its veth link (camera 640x480 at --fps, pose masks, tryon_server with tiny random
weights at 512x384, 10 steps, a preview every step), "robot" runs a plain rclpy action
client with the shipped LAN template naming the mirror as its initial peer. Bytes are
the mirror's veth counters (both directions, ``ip -s -j link``: every UDP datagram, DDS
headers, discovery and resends included), read around each phase, with the datagrams
each host's kernel dropped for a full socket buffer (``RcvbufErrors``: each costs a resend):

- idle: the live view runs on the mirror, the robot is connected and sends nothing;
- goal_person: goals carrying a 640x480 rgb8 person image (garment by catalogue id);
- goal_camera: goals on the mirror's own camera frame (garment by catalogue id);
- watch_compressed / watch_raw: the robot watches the mirror's camera
  (image_raw/compressed JPEG, or raw image_raw) for --watch seconds.

Prints a table, writes JSON (and a PNG with --png). Everything ends by itself: each wait has
a bound, the namespaces and processes go at the end.

    source scripts/env.sh && python scripts/bandwidth_bench.py --json docs/bandwidth.json
"""

import argparse
import json
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import threading
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'test'))
LIB = ROOT / 'install' / 'vton_ros' / 'lib' / 'vton_ros'
NET = '10.79.1'
MIRROR, ROBOT = f'{NET}.1', f'{NET}.2'
CAMERA = (640, 480)
WAIT = 300.0  # seconds: the bound of every wait (a loaded 2-core machine is slow)
GARMENT = 'red_tshirt'  # in the shipped catalogue (garments/)
DOMAIN = 201 + os.getpid() % 15  # a domain of its own (tests: 1-200; the highest is 232)


# ---- the robot (runs inside its namespace: --role robot) ---------------------------------
def robot() -> int:
    """Serve the parent's commands on stdin; answer 'DONE <json>' on stdout."""
    import numpy as np
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage, Image
    from vton_interfaces.action import TryOn

    from vton_ros.media import samples
    from vton_ros.media.camera_source import fit
    from vton_ros.nodes import image_conv
    from vton_ros.nodes.waits import SafeActionClient

    rclpy.init()
    node = rclpy.create_node('bandwidth_robot')
    executor = MultiThreadedExecutor(2)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    client = SafeActionClient(node, TryOn, 'tryon')  # Kilted's loses replies (waits.py)
    if not client.wait_for_server(timeout_sec=WAIT):
        print('FAILED no tryon server', flush=True)
        return 1
    person = image_conv.from_rgb(np.ascontiguousarray(
        fit(samples.portrait('astronaut'), *CAMERA, False)))

    def wait(future) -> object:
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(WAIT):
            raise TimeoutError('no answer')
        return future.result()

    print('READY', flush=True)
    for line in sys.stdin:
        words = line.split()
        if words[0] == 'quit':
            break
        start = time.monotonic()
        info: dict = {}
        if words[0] == 'goal':
            codes = []
            for _ in range(int(words[2])):
                goal = TryOn.Goal(garment_id=GARMENT, cloth_type='upper')
                if words[1] == 'person':
                    goal.person_image = person
                handle = wait(client.send_goal_async(goal))
                print(f'robot: {words[1]} goal accepted: {handle.accepted}', file=sys.stderr)
                codes.append(wait(handle.get_result_async()).result.error_code
                             if handle.accepted else -1)
                print(f'robot: {words[1]} goal ended {codes[-1]}', file=sys.stderr)
            info['codes'] = codes
        elif words[0] == 'watch':
            kind, seconds = words[1], float(words[2])
            count = [0]
            topic, msg = ('image_raw/compressed', CompressedImage) if kind == 'compressed' \
                else ('image_raw', Image)
            sub = node.create_subscription(msg, topic, lambda _m: count.__setitem__(
                0, count[0] + 1), qos_profile_sensor_data)
            time.sleep(seconds)
            node.destroy_subscription(sub)
            info['messages'] = count[0]
        elif words[0] == 'idle':
            time.sleep(float(words[1]))
        info['seconds'] = time.monotonic() - start
        print('DONE ' + json.dumps(info), flush=True)
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


# ---- the parent: hosts, stack, phases ----------------------------------------------------
def link_bytes(hosts, host: str, iface: str) -> tuple[int, int]:
    """Return (rx, tx) bytes of ``iface`` in ``host``'s namespace."""
    out = subprocess.run(['ip', '-n', hosts.ns[host], '-s', '-j', 'link', 'show', 'dev', iface],
                         check=True, capture_output=True, text=True, timeout=30).stdout
    stats = json.loads(out)[0]['stats64']
    return stats['rx']['bytes'], stats['tx']['bytes']


def udp_drops(hosts, host: str) -> int:
    """Return the UDP datagrams ``host``'s kernel dropped for full receive buffers."""
    out = subprocess.run(['ip', 'netns', 'exec', hosts.ns[host], 'cat', '/proc/net/snmp'],
                         check=True, capture_output=True, text=True, timeout=30).stdout
    names, values = [line.split()[1:] for line in out.splitlines() if line.startswith('Udp:')]
    return int(values[names.index('RcvbufErrors')])


def stack_file(path: Path, weights: Path, fps: float) -> str:
    """Write the mirror's parameters: 640x480 camera, pose masks, tiny weights, 512x384."""
    from vton_ros.settings import files as param_files

    path.write_text(param_files.dump_yaml({
        'camera_node': {'camera.fps': fps, 'camera.width': CAMERA[0],
                        'camera.height': CAMERA[1], 'camera.source': 'sample:astronaut'},
        'segmentation_node': {'segmentation.device': 'cpu', 'segmentation.max_rate': 5.0},
        'tryon_server': {
            'catvton.base_model': str(weights / 'stable-diffusion-inpainting'),
            'catvton.vae': str(weights / 'sd-vae-ft-mse'),
            'catvton.attn_ckpt': str(weights / 'CatVTON'), 'catvton.device': 'cpu',
            'catvton.precision': 'fp32', 'catvton.height': 512, 'catvton.width': 384,
            'catvton.num_inference_steps': 10, 'tryon.preview_every': 1,
            'segmentation.device': 'cpu', 'tryon.pair_wait': WAIT, 'tryon.pair_max_age': WAIT,
            'garments.catalog_dir': str(ROOT / 'garments')}}))
    return str(path)


def wait_line(stream, prefix: str, what: str, deadline: float) -> str:
    """Read lines until one starts with ``prefix`` (RuntimeError past the deadline)."""
    found: list = []

    def read():
        for line in stream:
            if line.startswith(prefix) or line.startswith('FAILED'):
                found.append(line.strip())
                return
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(max(0.0, deadline - time.monotonic()))
    if not found or found[0].startswith('FAILED'):
        raise RuntimeError(f'{what}: {found[0] if found else "no answer in time"}')
    return found[0]


def run(args) -> dict:
    """Measure in a temporary folder (the weights, profiles and logs), removed at the end."""
    with tempfile.TemporaryDirectory(prefix='vton_bandwidth_') as folder:
        return measure(args, Path(folder))


def measure(args, tmp: Path) -> dict:
    """Make the hosts, start the mirror and the robot, measure each phase."""
    from netns import Hosts

    from vton_ros.settings import dds
    from vton_ros.tools.make_test_weights import write_test_weights

    weights = Path(write_test_weights(str(tmp / 'weights'))['base_model']).parent
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN), PYTHONUNBUFFERED='1')
    template = (ROOT / 'config' / dds.LAN_TEMPLATE).read_text()
    (tmp / 'robot.xml').write_text(dds.lan_profile(template, ROBOT, (MIRROR,)))
    robot_env = dict(env, FASTDDS_DEFAULT_PROFILES_FILE=str(tmp / 'robot.xml'))
    phases: dict = {}
    with Hosts('mirror', 'robot') as hosts:
        hosts.add_link('mirror', 'robot', NET)
        iface = hosts.iface('mirror', NET)
        log = open(tmp / 'bringup.log', 'w', encoding='utf-8')
        mirror = subprocess.Popen(hosts.argv('mirror', [
            LIB / 'tryon_bringup', '--params-file', stack_file(tmp / 'stack.yaml', weights,
                                                               args.fps),
            '--lan', iface]), env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        robot_proc = None
        try:
            deadline = time.monotonic() + WAIT
            while 'model loaded' not in (tmp / 'bringup.log').read_text() or \
                    'ready on cpu' not in (tmp / 'bringup.log').read_text():
                if time.monotonic() > deadline or mirror.poll() is not None:
                    raise RuntimeError('the mirror did not start: '
                                       + (tmp / 'bringup.log').read_text()[-2000:])
                time.sleep(0.5)
            robot_proc = subprocess.Popen(
                hosts.argv('robot', [sys.executable, __file__, '--role', 'robot']),
                env=robot_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                start_new_session=True)
            wait_line(robot_proc.stdout, 'READY', 'the robot', time.monotonic() + WAIT)
            time.sleep(args.settle)  # discovery's first burst is not the steady state
            plan = [('idle', f'idle {args.idle}', 0),
                    ('goal_camera', f'goal camera {args.goals}', args.goals),
                    ('goal_person', f'goal person {args.goals}', args.goals),
                    ('watch_compressed', f'watch compressed {args.watch}', 0),
                    ('watch_raw', f'watch raw {args.watch}', 0)]
            for name, command, goals in plan:
                before = link_bytes(hosts, 'mirror', iface)
                drops = [udp_drops(hosts, h) for h in ('mirror', 'robot')]
                robot_proc.stdin.write(command + '\n')
                robot_proc.stdin.flush()
                info = json.loads(wait_line(robot_proc.stdout, 'DONE', name,
                                            time.monotonic() + WAIT * max(1, goals))[5:])
                after = link_bytes(hosts, 'mirror', iface)
                info.update(to_mirror=after[0] - before[0], from_mirror=after[1] - before[1],
                            mirror_udp_drops=udp_drops(hosts, 'mirror') - drops[0],
                            robot_udp_drops=udp_drops(hosts, 'robot') - drops[1])
                phases[name] = dict(info, goals=goals)
                print(f'{name}: {info}', file=sys.stderr)
            robot_proc.stdin.write('quit\n')
            robot_proc.stdin.flush()
            robot_proc.wait(60)
        finally:
            for proc in (robot_proc, mirror):
                if proc is not None and proc.poll() is None:
                    os.killpg(proc.pid, 2)  # SIGINT: bringup stops its nodes
                    try:
                        proc.wait(60)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, 9)
                        proc.wait(30)
            log.close()
    return summarize(phases, args)


def summarize(phases: dict, args) -> dict:
    """Per goal and per second figures, the idle background taken off the goals."""
    idle = phases['idle']
    background = (idle['to_mirror'] + idle['from_mirror']) / idle['seconds']
    out = {'camera': list(CAMERA), 'fps': args.fps, 'background_bytes_per_s': background,
           'phases': phases}
    for name in ('goal_person', 'goal_camera'):
        p = phases[name]
        total = p['to_mirror'] + p['from_mirror'] - background * p['seconds']
        out[name] = {'bytes_per_goal': total / p['goals'],
                     'to_mirror_per_goal': p['to_mirror'] / p['goals'],
                     'from_mirror_per_goal': p['from_mirror'] / p['goals'],
                     'seconds_per_goal': p['seconds'] / p['goals'],
                     'mbit_per_s_back_to_back': (p['to_mirror'] + p['from_mirror']) * 8e-6
                     / p['seconds'],
                     'succeeded': sum(1 for c in p['codes'] if c == 0),
                     'udp_drops_per_goal': (p['mirror_udp_drops'] + p['robot_udp_drops'])
                     / p['goals']}
    for name in ('watch_compressed', 'watch_raw'):
        p = phases[name]
        out[name] = {'mbit_per_s': (p['to_mirror'] + p['from_mirror']) * 8e-6 / p['seconds'],
                     'messages_per_s': p['messages'] / p['seconds'],
                     'udp_drops': p['mirror_udp_drops'] + p['robot_udp_drops']}
    out['live_idle_mbit_per_s'] = background * 8e-6
    pixels = CAMERA[0] * CAMERA[1]  # the images' own bytes, for comparison with the wire's
    out['image_bytes_per_goal'] = {'goal_person': 3 * pixels + 3 * pixels + pixels,
                                   'goal_camera': 3 * pixels + pixels}
    return out


def table(s: dict) -> str:
    """Return the summary as a text table."""
    rows = [f'{"what":34s} {"figure":>14s}',
            f'{"live view, robot connected (idle)":34s} {s["live_idle_mbit_per_s"]:11.3f} Mb/s']
    for name, label in (('goal_person', 'goal with a 640x480 person image'),
                        ('goal_camera', "goal on the mirror's camera")):
        g = s[name]
        rows.append(f'{label:34s} {g["bytes_per_goal"] / 1e6:11.3f} MB/goal  '
                    f'(robot->mirror {g["to_mirror_per_goal"] / 1e6:.3f} MB, '
                    f'mirror->robot {g["from_mirror_per_goal"] / 1e6:.3f} MB; '
                    f'{g["succeeded"]} ok, back to back {g["mbit_per_s_back_to_back"]:.1f} '
                    f'Mb/s at {g["seconds_per_goal"]:.1f} s/goal; '
                    f'{g["udp_drops_per_goal"]:.0f} datagrams dropped per goal)')
    for name, label in (('watch_compressed', 'robot watches image_raw/compressed'),
                        ('watch_raw', 'robot watches raw image_raw')):
        w = s[name]
        rows.append(f'{label:34s} {w["mbit_per_s"]:11.3f} Mb/s ({w["messages_per_s"]:.1f} '
                    f'frames/s arrived; {w["udp_drops"]} datagrams dropped)')
    return '\n'.join(rows)


def plot(s: dict, path: str) -> None:
    """Draw the streams in Mbit/s against the 20 Mbit/s goal, and the bytes per goal."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = ['live view,\nrobot idle', 'robot watches\nJPEG camera', 'robot watches\nraw camera']
    values = [s['live_idle_mbit_per_s'], s['watch_compressed']['mbit_per_s'],
              s['watch_raw']['mbit_per_s']]
    bars = left.bar(labels, values, color=['#4c72b0', '#55a868', '#c44e52'])
    left.bar_label(bars, fmt='%.2f')
    left.axhline(20.0, color='k', linestyle='--', linewidth=1)
    left.text(-0.4, 21.5, '20 Mbit/s')
    left.set_ylabel('Mbit/s on the link (both ways)')
    left.set_title(f'Streams (640x480 camera at {s["fps"]:g} fps)')
    names = ('goal_person', 'goal_camera')
    wire = [s[n]['bytes_per_goal'] / 1e6 for n in names]
    own = [s['image_bytes_per_goal'][n] / 1e6 for n in names]
    x = range(len(names))
    bars = right.bar([i - 0.2 for i in x], wire, 0.4, label='on the wire', color='#4c72b0')
    right.bar_label(bars, fmt='%.2f')
    right.bar([i + 0.2 for i in x], own, 0.4, label="the images' own bytes", color='#aaaaaa')
    right.set_xticks(list(x), ['goal with a 640x480\nperson image',
                               "goal on the\nmirror's camera"])
    right.set_ylabel('MB per goal (both ways)')
    right.set_title('Per try-on (20 Mbit/s carries 2.5 MB/s)')
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    """Run the benchmark (or, with --role robot, the robot inside its namespace)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('--role', choices=('bench', 'robot'), default='bench')
    parser.add_argument('--goals', type=int, default=3, help='goals per kind (default 3)')
    parser.add_argument('--idle', type=float, default=10.0, help='seconds of idle (10)')
    parser.add_argument('--watch', type=float, default=5.0, help='seconds of watching (5)')
    parser.add_argument('--settle', type=float, default=10.0,
                        help='seconds after the robot found the mirror before measuring (10)')
    parser.add_argument('--fps', type=float, default=10.0, help='camera fps (10)')
    parser.add_argument('--json', help='write the summary here')
    parser.add_argument('--png', help='write a bar chart here')
    args = parser.parse_args()
    if args.role == 'robot':
        return robot()
    if os.geteuid() != 0:
        print('bandwidth_bench: network namespaces need root', file=sys.stderr)
        return 2
    summary = run(args)
    print(table(summary))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=1))
    if args.png:
        plot(summary, args.png)
    return 0


if __name__ == '__main__':
    sys.exit(main())
