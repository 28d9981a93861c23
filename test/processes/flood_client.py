"""
Send COUNT TryOn goals at once, then print a JSON summary of what came back.

Usage: flood_client.py COUNT GO_FILE [--default-qos] [--late SECONDS]. Prints ``ready`` once
the server is there, waits for GO_FILE to exist (so several processes start together),
sends every goal without waiting, and then waits for each goal's answer (accepted or
rejected) and for the result of each accepted goal. A request still unanswered after QUIET
seconds without any new answer counts as lost. ``--default-qos`` uses rclpy's default
service QoS. ``--late SECONDS``: ask for the results only SECONDS after every accepted goal
has ended (its status, from the status topic), as a slow client would.
"""

import json
import os
import sys
import time

from action_msgs.msg import GoalStatus
import numpy as np
import rclpy
from rclpy.action import ActionClient
from vton_interfaces.action import TryOn

from vton_ros.media import samples
from vton_ros.nodes import action_qos, image_conv

QUIET = 60.0  # seconds without a new answer after which the rest counts as lost
ENDED = (GoalStatus.STATUS_SUCCEEDED, GoalStatus.STATUS_CANCELED, GoalStatus.STATUS_ABORTED)


def goal(seed: int) -> TryOn.Goal:
    """Return a small valid goal: astronaut 64x48 with a mask, a drawn garment, 1 step."""
    person = np.ascontiguousarray(samples.portrait('astronaut')[::8, 64:-64:8][:64, :48])
    mask = np.zeros(person.shape[:2], np.uint8)
    mask[30:60, 8:40] = 255
    return TryOn.Goal(person_image=image_conv.from_rgb(person), mask=image_conv.from_mono(mask),
                      garment_image=image_conv.from_rgb(samples.garment('tshirt', height=64,
                                                                        width=48)),
                      cloth_type='upper', num_inference_steps=1, seed=seed)


def wait_all(node, futures: list, start: float) -> None:
    """Spin until every future is done or QUIET seconds pass without one completing."""
    last, done = time.monotonic(), 0
    while done < len(futures) and time.monotonic() - last < QUIET:
        rclpy.spin_once(node, timeout_sec=0.1)
        now_done = sum(f.done() for f in futures)
        if now_done > done:
            done, last = now_done, time.monotonic()


def wait_ended(node, handles: list, late: float) -> None:
    """Spin until every goal has ended (or QUIET s without one ending), then ``late`` s more."""
    last, ended = time.monotonic(), 0
    while ended < len(handles) and time.monotonic() - last < QUIET:
        rclpy.spin_once(node, timeout_sec=0.1)
        now_ended = sum(h.status in ENDED for h in handles)
        if now_ended > ended:
            ended, last = now_ended, time.monotonic()
    until = time.monotonic() + late
    while time.monotonic() < until:
        rclpy.spin_once(node, timeout_sec=0.1)


def main() -> None:
    count, go_file = int(sys.argv[1]), sys.argv[2]
    late = float(sys.argv[sys.argv.index('--late') + 1]) if '--late' in sys.argv else None
    options = {} if '--default-qos' in sys.argv else action_qos.client_options()
    rclpy.init()
    node = rclpy.create_node(f'flood_client_{os.getpid()}')
    client = ActionClient(node, TryOn, 'tryon', **options)
    if not client.wait_for_server(timeout_sec=60.0):
        print(json.dumps({'error': 'no server'}))
        sys.exit(1)
    goals = [goal(i) for i in range(count)]
    print('ready', flush=True)
    while not os.path.exists(go_file):
        rclpy.spin_once(node, timeout_sec=0.01)
    start = time.monotonic()
    sent = [client.send_goal_async(g) for g in goals]
    wait_all(node, sent, start)
    handles = [f.result() for f in sent if f.done()]
    accepted = [h for h in handles if h.accepted]
    if late is not None:
        wait_ended(node, accepted, late)
    results = [h.get_result_async() for h in accepted]
    wait_all(node, results, start)
    done = [f.result() for f in results if f.done()]
    print(json.dumps({
        'sent': count, 'answered': len(handles), 'accepted': len(accepted),
        'rejected': len(handles) - len(accepted), 'results': len(done),
        'codes': sorted(r.result.error_code for r in done),
        'statuses': sorted(r.status for r in done),
        'seconds': time.monotonic() - start}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == '__main__':
    main()
