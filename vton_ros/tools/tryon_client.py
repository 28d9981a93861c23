"""
tryon_client: send one TryOn goal, show progress, save the result and a panel.

``--garment`` is an image file or a garment id of the server's catalogue. Without
``--person`` the server uses the latest camera frame; the client then takes that frame from
``image_raw`` (matched by the result's stamp) for the panel.
Prints the stage timings, the client round trip and the ROS overhead (round trip minus
the server's total). Ctrl-C or SIGTERM cancels the goal, waits for its result and exits
0 when it ended CANCELED.
"""

import argparse
from collections import OrderedDict
import json
from pathlib import Path
import signal
import sys
import threading
import time

from action_msgs.msg import GoalStatus
import cv2
import numpy as np
import rclpy
from rclpy.action import ActionClient
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image
from tqdm import tqdm
from vton_interfaces.action import TryOn

from vton_ros.camera_source import read_image
from vton_ros.nodes import action_qos, image_conv
from vton_ros.nodes.runner import ignore_signals, spin_until, stop_executor

CANCEL_WAIT = 30.0  # seconds for the cancel answer and the result after Ctrl-C
ERROR_NAMES = {getattr(TryOn.Result, n): n for n in dir(TryOn.Result)
               if n.isupper() and isinstance(getattr(TryOn.Result, n), int)}


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('--garment', required=True, help='garment image file or catalogue id')
    parser.add_argument('--person', help='person image file (default: latest camera frame)')
    parser.add_argument('--mask', help='agnostic mask image file (default: generated)')
    parser.add_argument('--cloth-type', default='', choices=('', 'upper', 'lower', 'overall'))
    parser.add_argument('--steps', type=int, default=0, help='denoising steps (0 = server)')
    parser.add_argument('--guidance', type=float, default=-1.0, help='CFG scale (<0 = server)')
    parser.add_argument('--seed', type=int, default=-1, help='noise seed (<0 = server)')
    parser.add_argument('--out', default='tryon_result.png', help='result image path')
    parser.add_argument('--panel', help='panel path (default: <out stem>_panel.png)')
    parser.add_argument('--caption', default='', help='text printed under the panel')
    parser.add_argument('--action', default='tryon', help='action name')
    parser.add_argument('--namespace', default='', help='namespace of the stack (e.g. '
                        'mirror_a: the action /mirror_a/tryon, frames /mirror_a/image_raw)')
    parser.add_argument('--timeout', type=float, default=600.0, help='seconds to wait for '
                        'the result')
    parser.add_argument('--server-timeout', type=float, default=30.0,
                        help='seconds to wait for the action server to appear')
    parser.add_argument('--json', action='store_true', help='print a JSON summary last')
    return parser


class TryOnClient:
    """Action client with a buffer of recent camera frames for the panel."""

    def __init__(self, node, action: str) -> None:
        self.node = node
        self.client = ActionClient(node, TryOn, action, **action_qos.client_options())
        self._frames: OrderedDict[tuple, Image] = OrderedDict()
        self._lock = threading.Lock()
        node.create_subscription(Image, 'image_raw', self._frame, qos_profile_sensor_data)

    def _frame(self, msg: Image) -> None:
        with self._lock:
            self._frames[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg
            while len(self._frames) > 60:
                self._frames.popitem(last=False)

    def frame(self, header) -> np.ndarray | None:
        """Return the camera frame with this header's stamp, if it was received."""
        with self._lock:
            msg = self._frames.get((header.stamp.sec, header.stamp.nanosec))
        return image_conv.to_rgb(msg) if msg is not None else None


class Interrupted(Exception):
    """Ctrl-C (SIGINT) or SIGTERM arrived while waiting."""


class StopRequest:
    """SIGINT/SIGTERM handlers that only set a flag; waits check it (no KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: self.event.set())


def wait(future, timeout: float, stop: StopRequest | None = None):
    """Wait for a future completed by the executor thread; Interrupted on a stop request."""
    deadline = time.monotonic() + timeout
    while not future.done():
        if stop is not None and stop.event.is_set():
            raise Interrupted()
        if time.monotonic() > deadline:
            raise TimeoutError(f'no answer in {timeout:.0f} s')
        time.sleep(0.01)
    return future.result()


def wait_for_server(client: ActionClient, timeout: float, stop: StopRequest) -> bool:
    """Wait until the action server is there; Interrupted on a stop request."""
    deadline = time.monotonic() + timeout
    while not client.server_is_ready():
        if stop.event.is_set():
            raise Interrupted()
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def make_goal(args: argparse.Namespace) -> tuple[TryOn.Goal, dict]:
    """Build the goal from the arguments; also return the images read (for the panel)."""
    goal = TryOn.Goal(cloth_type=args.cloth_type, num_inference_steps=args.steps,
                      guidance_scale=args.guidance, seed=args.seed)
    images = {}
    if Path(args.garment).is_file():
        images['garment'] = read_image(Path(args.garment))
        goal.garment_image = image_conv.from_rgb(images['garment'])
    else:
        goal.garment_id = args.garment
    if args.person:
        images['person'] = read_image(Path(args.person))
        goal.person_image = image_conv.from_rgb(images['person'])
    if args.mask:
        mask = cv2.imread(args.mask, cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise ValueError(f'cannot read mask {args.mask}')
        goal.mask = image_conv.from_mono(mask)
    return goal, images


def panel(person: np.ndarray | None, mask: np.ndarray, garment: np.ndarray | None,
          result: np.ndarray, height: int = 384, caption: str = '') -> np.ndarray:
    """
    Side by side: person | mask overlay | garment | result, each scaled to ``height``.

    A non-empty ``caption`` is written in a white band under the images (wrapped).
    """
    from vton_ros.pipeline.masks import overlay_mask

    blank = np.full_like(result, 255)
    person = person if person is not None else blank
    tiles = [person, overlay_mask(person, mask), garment if garment is not None else blank,
             result]
    scaled = [cv2.resize(t, (max(1, round(t.shape[1] * height / t.shape[0])), height),
                         interpolation=cv2.INTER_AREA) for t in tiles]
    image = np.concatenate(scaled, axis=1)
    if not caption:
        return image
    font, scale, line = cv2.FONT_HERSHEY_SIMPLEX, 0.6, 26
    lines, words = [], caption.split()
    for word in words:
        if lines and cv2.getTextSize(f'{lines[-1]} {word}', font, scale, 1)[0][0] < \
                image.shape[1] - 20:
            lines[-1] += f' {word}'
        else:
            lines.append(word)
    band = np.full((line * len(lines) + 12, image.shape[1], 3), 255, np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(band, text, (10, line * (i + 1)), font, scale, (160, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([image, band], axis=0)


def save_rgb(path: str, rgb: np.ndarray) -> None:
    """Write an RGB image (PNG/JPEG by extension)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f'cannot write {path}')


def run(args: argparse.Namespace, client: TryOnClient, stop: StopRequest) -> int:
    """Send the goal, follow it, save outputs; return the process exit code."""
    goal, images = make_goal(args)
    if not wait_for_server(client.client, args.server_timeout, stop):
        print(f'tryon_client: no action server {args.action!r} (is tryon_server running?)',
              file=sys.stderr)
        return 3
    bar = tqdm(total=1, unit='step', desc='try-on', file=sys.stderr, leave=True)

    def on_feedback(msg):
        fb = msg.feedback
        bar.total = fb.total_steps
        bar.n = fb.step
        bar.set_postfix(eta=f'{fb.eta_sec:.1f}s')
        bar.refresh()

    start = time.monotonic()
    handle = wait(client.client.send_goal_async(goal, feedback_callback=on_feedback), 30.0)
    if not handle.accepted:
        bar.close()
        print('tryon_client: goal rejected (server busy, see tryon.busy_policy)',
              file=sys.stderr)
        return 4
    try:
        response = wait(handle.get_result_async(), args.timeout, stop)
    except Interrupted:
        bar.close()
        print('tryon_client: canceling the goal', file=sys.stderr)
        wait(handle.cancel_goal_async(), CANCEL_WAIT)
        response = wait(handle.get_result_async(), CANCEL_WAIT)
    round_trip = time.monotonic() - start
    bar.close()
    if response.status == GoalStatus.STATUS_UNKNOWN:  # its error_code 0 is no success
        print('tryon_client: failed: the server no longer knows the goal (status UNKNOWN: '
              'its result expired, see tryon.result_timeout)', file=sys.stderr)
        return 1
    result = response.result
    if result.error_code != TryOn.Result.SUCCESS:
        name = ERROR_NAMES.get(result.error_code, str(result.error_code))
        if stop.event.is_set() and result.error_code == TryOn.Result.CANCELED:
            print(f'tryon_client: {name}: {result.message}', file=sys.stderr)
            return 0  # stopped as asked
        print(f'tryon_client: failed: {name}: {result.message}', file=sys.stderr)
        return 1
    image = image_conv.to_rgb(result.image)
    mask = image_conv.to_mono(result.mask)
    save_rgb(args.out, image)
    person = images.get('person')
    if person is None:
        person = client.frame(result.image.header)
    panel_path = args.panel or str(Path(args.out).with_name(Path(args.out).stem + '_panel.png'))
    save_rgb(panel_path, panel(person, mask, images.get('garment'), image,
                               caption=args.caption))
    timings = {t.name: t.seconds for t in result.timings}
    print(f'{"stage":<14}{"seconds":>10}')
    for name, seconds in timings.items():
        print(f'{name:<14}{seconds:>10.3f}')
    overhead = round_trip - timings.get('total', 0.0)
    print(f'{"round trip":<14}{round_trip:>10.3f}')
    print(f'{"ROS overhead":<14}{overhead:>10.3f}')
    print(f'note: {result.message}')
    print(f'result: {Path(args.out).resolve()}')
    print(f'panel: {Path(panel_path).resolve()}')
    if args.json:
        print(json.dumps({'result': str(Path(args.out).resolve()),
                          'panel': str(Path(panel_path).resolve()), 'timings': timings,
                          'round_trip': round_trip, 'ros_overhead': overhead,
                          'seed': result.seed, 'message': result.message}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    # Ctrl-C and SIGTERM cancel the goal and wait for its result: rclpy must not shut down.
    stop = StopRequest()
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node('tryon_client', namespace=args.namespace)
    client = TryOnClient(node, args.action)
    executor = MultiThreadedExecutor()
    executor.add_node(node)
    done = threading.Event()
    thread = threading.Thread(target=spin_until, args=(executor, done), daemon=True)
    thread.start()
    try:
        return run(args, client, stop)
    except Interrupted:
        print('tryon_client: interrupted before a goal was sent', file=sys.stderr)
        return 0
    except (ValueError, OSError, TimeoutError) as err:
        print(f'tryon_client: {err}', file=sys.stderr)
        return 2
    finally:
        done.set()
        thread.join()
        stop_executor(executor)
        node.destroy_node()
        rclpy.try_shutdown()
        ignore_signals()


if __name__ == '__main__':
    sys.exit(main())
