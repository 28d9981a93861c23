"""
tryon_client: send one TryOn goal, show progress, save the result and a panel.

``--garment`` is an image file or a garment id of the server's catalogue. Without
``--person`` the server uses the latest camera frame; the client then takes that frame from
``image_raw`` (matched by the result's stamp) for the panel. Ctrl-C cancels the goal.
Prints the stage timings, the client round trip and the ROS overhead (round trip minus
the server's total).
"""

import argparse
from collections import OrderedDict
import json
from pathlib import Path
import sys
import threading
import time

import cv2
import numpy as np
import rclpy
from rclpy.action import ActionClient
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image
from tqdm import tqdm
from vton_interfaces.action import TryOn

from vton_ros.camera_source import read_image
from vton_ros.nodes import image_conv

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
    parser.add_argument('--action', default='tryon', help='action name')
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
        self.client = ActionClient(node, TryOn, action)
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


def wait(future, timeout: float):
    """Wait for a future completed by the executor thread."""
    deadline = time.monotonic() + timeout
    while not future.done():
        if time.monotonic() > deadline:
            raise TimeoutError(f'no answer in {timeout:.0f} s')
        time.sleep(0.01)
    return future.result()


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
          result: np.ndarray, height: int = 384) -> np.ndarray:
    """Side by side: person | mask overlay | garment | result, each scaled to ``height``."""
    from vton_ros.pipeline.masks import overlay_mask

    blank = np.full_like(result, 255)
    person = person if person is not None else blank
    tiles = [person, overlay_mask(person, mask), garment if garment is not None else blank,
             result]
    scaled = [cv2.resize(t, (max(1, round(t.shape[1] * height / t.shape[0])), height),
                         interpolation=cv2.INTER_AREA) for t in tiles]
    return np.concatenate(scaled, axis=1)


def save_rgb(path: str, rgb: np.ndarray) -> None:
    """Write an RGB image (PNG/JPEG by extension)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f'cannot write {path}')


def run(args: argparse.Namespace, node, client: TryOnClient) -> int:
    """Send the goal, follow it, save outputs; return the process exit code."""
    goal, images = make_goal(args)
    if not client.client.wait_for_server(timeout_sec=args.server_timeout):
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
        response = wait(handle.get_result_async(), args.timeout)
    except KeyboardInterrupt:
        print('\ntryon_client: canceling the goal', file=sys.stderr)
        wait(handle.cancel_goal_async(), 10.0)
        response = wait(handle.get_result_async(), 30.0)
    round_trip = time.monotonic() - start
    bar.close()
    result = response.result
    if result.error_code != TryOn.Result.SUCCESS:
        name = ERROR_NAMES.get(result.error_code, str(result.error_code))
        print(f'tryon_client: failed: {name}: {result.message}', file=sys.stderr)
        return 1
    image = image_conv.to_rgb(result.image)
    mask = image_conv.to_mono(result.mask)
    save_rgb(args.out, image)
    person = images.get('person')
    if person is None:
        person = client.frame(result.image.header)
    panel_path = args.panel or str(Path(args.out).with_name(Path(args.out).stem + '_panel.png'))
    save_rgb(panel_path, panel(person, mask, images.get('garment'), image))
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
    # Ctrl-C must raise KeyboardInterrupt (to cancel the goal), not shut rclpy down.
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node('tryon_client')
    client = TryOnClient(node, args.action)
    executor = MultiThreadedExecutor()
    executor.add_node(node)
    thread = threading.Thread(target=_spin, args=(executor,), daemon=True)
    thread.start()
    try:
        return run(args, node, client)
    except (ValueError, OSError, TimeoutError) as err:
        print(f'tryon_client: {err}', file=sys.stderr)
        return 2
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


def _spin(executor) -> None:
    try:
        executor.spin()
    except ExternalShutdownException:
        pass


if __name__ == '__main__':
    sys.exit(main())
