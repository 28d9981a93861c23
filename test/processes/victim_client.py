"""
Send COUNT long TryOn goals (STEPS steps each), print ``running`` once the first is running.

``running (preview WxH)`` names the size of the first feedback's preview (0x0: none).

Usage: victim_client.py COUNT STEPS. The test then kills this process (SIGKILL) to see the
server stop its goals. Prints ``accepted <goal id hex>`` for each accepted goal.
"""

import sys

import numpy as np
import rclpy
from rclpy.action import ActionClient
from vton_interfaces.action import TryOn

from vton_ros.media import samples
from vton_ros.nodes import action_qos, image_conv


def main() -> None:
    count, steps = int(sys.argv[1]), int(sys.argv[2])
    rclpy.init()
    node = rclpy.create_node('victim_client')
    client = ActionClient(node, TryOn, 'tryon', **action_qos.client_options())
    if not client.wait_for_server(timeout_sec=60.0):
        sys.exit('no server')
    person = np.ascontiguousarray(samples.portrait('astronaut')[::8, 64:-64:8][:64, :48])
    mask = np.zeros(person.shape[:2], np.uint8)
    mask[30:60, 8:40] = 255
    goal = TryOn.Goal(person_image=image_conv.from_rgb(person), mask=image_conv.from_mono(mask),
                      garment_image=image_conv.from_rgb(samples.garment('tshirt', height=64,
                                                                        width=48)),
                      cloth_type='upper', num_inference_steps=steps)
    feedback = []
    for _ in range(count):
        future = client.send_goal_async(goal, feedback_callback=feedback.append)
        rclpy.spin_until_future_complete(node, future)
        handle = future.result()
        print(f'accepted {bytes(handle.goal_id.uuid).hex()}' if handle.accepted else 'rejected',
              flush=True)
        handle.get_result_async()
    while not feedback:
        rclpy.spin_once(node, timeout_sec=0.1)
    preview = feedback[0].feedback.preview
    print(f'running (preview {preview.width}x{preview.height})', flush=True)
    while True:
        rclpy.spin_once(node, timeout_sec=0.1)


if __name__ == '__main__':
    main()
