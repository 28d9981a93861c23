"""
tryon_client: send one TryOn goal, show progress, save the result and a panel.

``--garment`` is an image file or a garment id of the server's catalogue. Without
``--person`` the server uses the latest camera frame; the client then takes that frame from
``image_raw`` (matched by the result's stamp) for the panel.
Inputs are checked before anything waits; every wait is bounded and ends with one line and
its own exit code (EXIT). Prints the stage timings, the wait for the first camera
frame+mask pair, the client round trip and the ROS overhead (round trip minus both), and
says so when the server runs the demo model or random weights (``tryon/model``). Ctrl-C or
SIGTERM cancels the goal, waits for its result and exits 0 when it ended CANCELED.
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
import numpy as np
from rcl_interfaces.srv import GetParameters
import rclpy
from rclpy.action import ActionClient
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image
from std_msgs.msg import String
from tqdm import tqdm
from vton_interfaces.action import TryOn

from vton_ros.goals import client_files as files
from vton_ros.goals.model_identity import ModelIdentity, TOPIC as MODEL_TOPIC
from vton_ros.media.garments import GarmentCatalog
from vton_ros.nodes import action_qos, image_conv
from vton_ros.nodes.common import LATCHED_QOS
from vton_ros.nodes.goal_request import GoalRequests
from vton_ros.nodes.outcome import CODE_NAMES
from vton_ros.nodes.runner import destroy, ignore_signals, spin_until, stop_executor
from vton_ros.nodes.waits import SafeActionClient

CANCEL_WAIT = 30.0  # seconds for the cancel answer and the result after Ctrl-C / --timeout
GOAL_ANSWER_WAIT = 30.0  # seconds for the server to accept or reject the goal
CATALOG_WAIT = 5.0  # seconds for the server's garments.catalog_dir (the panel's garment)
INPUT_ERRORS = ('INVALID_IMAGE', 'INVALID_ARGUMENT', 'UNKNOWN_GARMENT')  # exit 2 like ours
EXIT = {'done': (0, 'done (or canceled by Ctrl-C)'),
        'failed': (1, 'the try-on failed on the server'),
        'input': (2, 'an input error: file not found, not an image, unknown garment, bad value'),
        'no_server': (3, 'no action server within --server-timeout'),
        'rejected': (4, 'goal rejected (server busy)'),
        'timeout': (5, 'no result within --timeout (the goal was canceled)'),
        'no_answer': (6, 'the server stopped answering: no reply to the goal or the cancel, '
                         'or it forgot the goal')}
EXIT_CODES = 'exit codes:\n' + '\n'.join(f'  {code}  {text}' for code, text in EXIT.values())


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip(),
                                     epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--garment', required=True, help='garment image file or catalogue id '
                        "(an id of tryon_server's garments.catalog_dir, e.g. red_tshirt)")
    parser.add_argument('--person', help='person image file (default: latest camera frame)')
    parser.add_argument('--mask', help='agnostic mask image file (default: generated)')
    parser.add_argument('--cloth-type', default='', choices=('', 'upper', 'lower', 'overall'))
    parser.add_argument('--steps', type=int, default=0,
                        help="denoising steps >= 1 (0 = the server's catvton.num_inference_steps)")
    parser.add_argument('--guidance', type=float, default=-1.0, help='CFG scale (<0 = server)')
    parser.add_argument('--seed', type=int, default=-1, help='noise seed (<0 = server)')
    parser.add_argument('--out', default='tryon_result.png', help='result image path')
    parser.add_argument('--panel', help='panel path (default: <out stem>_panel.png)')
    parser.add_argument('--caption', default='', help='text printed under the panel')
    parser.add_argument('--action', default='tryon', help='action name')
    parser.add_argument('--namespace', default='', help='namespace of the stack (e.g. '
                        'mirror_a: the action /mirror_a/tryon, frames /mirror_a/image_raw)')
    parser.add_argument('--timeout', type=float, default=600.0, help='seconds to wait for '
                        'the result once the goal is accepted; then it is canceled (exit 5)')
    parser.add_argument('--server-timeout', type=float, default=30.0,
                        help='seconds to wait for the action server to appear (exit 3)')
    parser.add_argument('--json', action='store_true', help='print a JSON summary last')
    return parser


class TryOnClient:
    """Action client with a buffer of recent camera frames for the panel; the model run."""

    def __init__(self, node, action: str) -> None:
        self.node = node
        self.client = SafeActionClient(node, TryOn, action, **action_qos.client_options())
        self.requests = GoalRequests(node, self.client, TryOn, action)
        self.name = node.resolve_topic_name(action)  # the action's full name, for messages
        self.model: ModelIdentity | None = None  # from tryon/model
        self._frames: OrderedDict[tuple, Image] = OrderedDict()
        self._lock = threading.Lock()
        self.hold = threading.Event()  # set at the first feedback: the server has its frame
        node.create_subscription(Image, 'image_raw', self._frame, qos_profile_sensor_data)
        node.create_subscription(String, MODEL_TOPIC, self._model, LATCHED_QOS)

    def _model(self, msg: String) -> None:
        try:
            self.model = ModelIdentity.from_json(msg.data)
        except ValueError as err:
            self.node.get_logger().warning(f'{MODEL_TOPIC}: {err}')

    def _frame(self, msg: Image) -> None:
        if self.hold.is_set():  # keep the frames of the goal's start, however long it runs
            return
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


def catalogue_garment(node, garment_id: str) -> np.ndarray | None:
    """Read a garment of tryon_server's catalogue (its garments.catalog_dir), if readable."""
    client = node.create_client(GetParameters, 'tryon_server/get_parameters')
    try:
        if not client.wait_for_service(timeout_sec=CATALOG_WAIT):
            return None
        request = GetParameters.Request(names=['garments.catalog_dir'])
        response = wait(client.call_async(request), CATALOG_WAIT)
        folder = response.values[0].string_value if response.values else ''
        return GarmentCatalog(folder).load(garment_id)[0] if folder else None
    except (TimeoutError, KeyError, ValueError, OSError):  # not readable from here
        return None
    finally:
        node.destroy_client(client)


def make_goal(args: argparse.Namespace) -> tuple[TryOn.Goal, dict]:
    """
    Build the goal from the arguments; also return the images read (for the panel).

    Raises files.InputError for an input or value it cannot use, before anything waits.
    """
    files.check_values(args.steps, args.timeout, args.server_timeout)
    files.check_output(args.out, '--out')
    if args.panel:
        files.check_output(args.panel, '--panel')
    goal = TryOn.Goal(cloth_type=args.cloth_type, num_inference_steps=args.steps,
                      guidance_scale=args.guidance, seed=args.seed)
    images = {}
    if Path(args.garment).expanduser().exists():
        images['garment'] = files.read_rgb(args.garment, 'garment image')
        goal.garment_image = image_conv.from_rgb(images['garment'])
    elif files.looks_like_path(args.garment):
        raise files.missing_garment(args.garment)
    else:
        goal.garment_id = args.garment
    if args.person:
        images['person'] = files.read_rgb(args.person, 'person image')
        goal.person_image = image_conv.from_rgb(images['person'])
    if args.mask:
        goal.mask = image_conv.from_mono(files.read_gray(args.mask, 'mask'))
    return goal, images


class Progress:
    """A progress bar made at the first feedback (so it knows the total), one ETA."""

    FORMAT = '{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} steps [{elapsed}{postfix}]'

    def __init__(self) -> None:
        self._bar = None
        self._closed = False
        self._lock = threading.Lock()

    def __call__(self, msg) -> None:
        """Feedback callback: show the step and the server's ETA ('--' while unknown)."""
        fb = msg.feedback
        with self._lock:
            if self._closed:  # a late feedback after the end: the line stays ended
                return
            if self._bar is None:
                self._bar = tqdm(total=fb.total_steps, desc='try-on', file=sys.stderr,
                                 bar_format=self.FORMAT)
            self._bar.n = fb.step
            eta = f'{fb.eta_sec:.1f}s' if fb.eta_sec >= 0 else '--'  # negative/NaN: unknown
            self._bar.set_postfix_str(f'eta {eta}', refresh=False)
            self._bar.refresh()

    def close(self) -> None:
        """End the bar's line (if one was shown); later feedback is ignored."""
        with self._lock:
            self._closed = True
            if self._bar is not None:
                self._bar.close()


def print_timings(timings: dict[str, float], round_trip: float, mask_given: bool) -> float:
    """
    Print the stage table; return the ROS overhead.

    The overhead is the round trip minus the server's total and its wait for the first
    camera frame+mask pair (``camera_wait``; not work, so not in the total).
    """
    waited = timings.pop('camera_wait', 0.0)
    notes = {}
    if timings.get('segmentation', 0.0) == 0.0:
        notes['segmentation'] = ('mask given' if mask_given else
                                 'done by segmentation_node with the camera frame')
    print(f'{"stage":<14}{"seconds":>10}')
    for name, seconds in timings.items():
        note = f'  ({notes[name]})' if name in notes else ''
        print(f'{name:<14}{seconds:>10.3f}{note}')
    overhead = round_trip - timings.get('total', 0.0) - waited
    print(f'{"camera wait":<14}{waited:>10.3f}  (for the first camera frame+mask pair)')
    print(f'{"round trip":<14}{round_trip:>10.3f}')
    print(f'{"ROS overhead":<14}{overhead:>10.3f}  (round trip - total - camera wait)')
    return overhead


def say(text: str) -> None:
    """Print one ``tryon_client:`` line on stderr."""
    print(f'tryon_client: {text}', file=sys.stderr, flush=True)


def cancel(handle) -> object | None:
    """Cancel an accepted goal; return its result response, None without an answer."""
    try:
        wait(handle.cancel_goal_async(), CANCEL_WAIT)
        return wait(handle.get_result_async(), CANCEL_WAIT)
    except TimeoutError:
        return None


def follow(args: argparse.Namespace, client: TryOnClient, stop: StopRequest,
           goal: TryOn.Goal) -> tuple[object | None, float, str]:
    """
    Send the goal and wait for its end: (result response or None, round trip, exit kind).

    Every wait is bounded: the answer to the goal (GOAL_ANSWER_WAIT), the result
    (--timeout, then the goal is canceled) and the cancel (CANCEL_WAIT).
    """
    bar = Progress()

    def on_feedback(msg) -> None:
        client.hold.set()
        bar(msg)

    start = time.monotonic()
    # A Ctrl-C before the acceptance is kept: the goal is canceled as soon as it is ours
    # (a cancel sent earlier would name a goal the server does not know yet).
    handle = client.requests.send(goal, on_feedback, GOAL_ANSWER_WAIT)
    if handle is None:
        say(f'{client.name} did not answer the goal request in {GOAL_ANSWER_WAIT:g} s')
        return None, 0.0, 'no_answer'
    if not handle.accepted:
        say('goal rejected (server busy, see tryon.busy_policy)')
        return None, 0.0, 'rejected'
    try:
        if stop.event.is_set():
            raise Interrupted()
        response = wait(handle.get_result_async(), args.timeout, stop)
    except Interrupted:
        bar.close()
        say('canceling the goal')
        response = cancel(handle)
        if response is None:
            say(f'no answer to the cancel in {CANCEL_WAIT:g} s')
            return None, 0.0, 'no_answer'
    except TimeoutError:
        bar.close()
        answered = cancel(handle) is not None
        say(f'no result within --timeout {args.timeout:g} s: '
            + ('canceled the goal' if answered else
               f'asked to cancel the goal, no answer in {CANCEL_WAIT:g} s'))
        return None, 0.0, 'timeout'
    bar.close()
    return response, time.monotonic() - start, 'done'


def run(args: argparse.Namespace, client: TryOnClient, stop: StopRequest, goal: TryOn.Goal,
        images: dict) -> int:
    """Wait for the server, send the goal, follow it, save outputs; return the exit code."""
    say(f'waiting up to {args.server_timeout:g} s for the action server {client.name} '
        '(tryon_server)')
    if not wait_for_server(client.client, args.server_timeout, stop):
        say(f'no action server {client.name} after {args.server_timeout:g} s (is '
            'tryon_server running? e.g. tryon_bringup --profile cpu,demo; see --server-timeout)')
        return EXIT['no_server'][0]
    response, round_trip, kind = follow(args, client, stop, goal)
    if response is None:
        return EXIT[kind][0]
    if response.status == GoalStatus.STATUS_UNKNOWN:  # its error_code 0 is no success
        say('failed: the server no longer knows the goal (status UNKNOWN: its result '
            'expired, see tryon.result_timeout)')
        return EXIT['no_answer'][0]
    result = response.result
    if result.error_code != TryOn.Result.SUCCESS:
        name = CODE_NAMES.get(result.error_code, str(result.error_code))
        if stop.event.is_set() and result.error_code == TryOn.Result.CANCELED:
            say(f'{name}: {result.message}')
            return EXIT['done'][0]  # stopped as asked
        say(f'failed: {name}: {result.message}')
        return EXIT['input' if name in INPUT_ERRORS else 'failed'][0]
    save(args, client, goal, images, result, round_trip)
    return EXIT['done'][0]


def save(args: argparse.Namespace, client: TryOnClient, goal: TryOn.Goal, images: dict,
         result, round_trip: float) -> None:
    """Write the result and the captioned panel; print the table and the paths."""
    image = image_conv.to_rgb(result.image)
    mask = image_conv.to_mono(result.mask)
    files.save_rgb(args.out, image)
    person = images.get('person')
    if person is None:
        person = client.frame(result.image.header)
    garment, garment_label = images.get('garment'), ''
    if garment is None and goal.garment_id:
        garment = catalogue_garment(client.node, goal.garment_id)
        garment_label = f'catalogue: {goal.garment_id}' if garment is not None else \
            f'catalogue id {goal.garment_id}'
    model = client.model.label() if client.model else \
        f'model unknown (no {MODEL_TOPIC} message from the server)'
    caption = f'{model}. {args.caption}' if args.caption else model
    panel_path = args.panel or str(Path(args.out).with_name(Path(args.out).stem + '_panel.png'))
    files.save_rgb(panel_path, files.panel(person, mask, garment, image, caption=caption,
                                           garment_label=garment_label))
    timings = {t.name: t.seconds for t in result.timings}
    overhead = print_timings(dict(timings), round_trip, bool(args.mask))
    warning = client.model.warning() if client.model else ''
    print(f'note: {result.message}')
    print(f'result: {Path(args.out).resolve()}' + (f' ({warning})' if warning else ''))
    print(f'panel: {Path(panel_path).resolve()}')
    if args.json:
        print(json.dumps({'result': str(Path(args.out).resolve()),
                          'panel': str(Path(panel_path).resolve()), 'timings': timings,
                          'round_trip': round_trip, 'ros_overhead': overhead,
                          'seed': result.seed, 'message': result.message,
                          'model': json.loads(client.model.to_json()) if client.model else None}))


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    try:  # the inputs first: a wrong path is answered before any ROS start-up
        goal, images = make_goal(args)
    except (ValueError, OSError) as err:
        say(str(err))
        return EXIT['input'][0]
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
        return run(args, client, stop, goal, images)
    except Interrupted:
        say('interrupted before a goal was sent')
        return EXIT['done'][0]
    except (ValueError, OSError) as err:
        say(str(err))
        return EXIT['input'][0]
    finally:
        done.set()
        thread.join()
        stop_executor(executor)
        destroy(node)  # its action client too: else its 67 MB Fast DDS segment stays behind
        rclpy.try_shutdown()
        ignore_signals()


if __name__ == '__main__':
    sys.exit(main())
