"""Send one TryOn goal (the astronaut, 128x128) and print a JSON summary of what came back."""

import hashlib
import json
import sys

import rclpy
from rclpy.action import ActionClient
from vton_interfaces.action import TryOn

from vton_ros.media import samples
from vton_ros.nodes import image_conv


def main() -> None:
    rclpy.init()
    node = rclpy.create_node('tryon_goal_client')
    client = ActionClient(node, TryOn, 'tryon')
    if not client.wait_for_server(timeout_sec=30.0):
        print(json.dumps({'error': 'no server'}))
        sys.exit(1)
    person = samples.portrait('astronaut')[::4, ::4].copy()
    goal = TryOn.Goal(person_image=image_conv.from_rgb(person, encoding='bgr8'),
                      garment_id='tshirt', cloth_type='upper', seed=1234)
    feedback = []

    def on_feedback(msg):
        fb = msg.feedback
        feedback.append({'step': fb.step, 'total': fb.total_steps,
                         'preview': [fb.preview.width, fb.preview.height]})

    send = client.send_goal_async(goal, feedback_callback=on_feedback)
    rclpy.spin_until_future_complete(node, send, timeout_sec=30.0)
    handle = send.result()
    result_future = handle.get_result_async()
    rclpy.spin_until_future_complete(node, result_future, timeout_sec=30.0)
    result = result_future.result().result
    image = image_conv.to_rgb(result.image)
    print(json.dumps({
        'accepted': handle.accepted, 'feedback': feedback, 'error_code': result.error_code,
        'seed': result.seed, 'shape': list(image.shape),
        'sha': hashlib.sha256(image.tobytes()).hexdigest(),
        'expected_sha': hashlib.sha256((255 - person).tobytes()).hexdigest(),
        'timings': [t.name for t in result.timings]}))
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == '__main__':
    main()
