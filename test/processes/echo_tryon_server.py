"""A tiny TryOn action server for the transport test: result = inverted person image."""

import time

import numpy as np
from rclpy.action import ActionServer
from rclpy.node import Node
from vton_interfaces.action import TryOn
from vton_interfaces.msg import StageTiming

from vton_ros.nodes import common, image_conv

STEPS = 5


class EchoServer(Node):
    """Answers every goal with STEPS feedbacks and the inverted person image."""

    def __init__(self) -> None:
        super().__init__('echo_tryon_server')
        self._server = ActionServer(self, TryOn, 'tryon', execute_callback=self.execute_callback)
        self.get_logger().info('echo server ready')

    def execute_callback(self, goal_handle):
        start = time.monotonic()
        person = image_conv.to_rgb(goal_handle.request.person_image)
        for step in range(1, STEPS + 1):
            preview = image_conv.from_rgb(person[::8, ::8].copy()) if step == STEPS else None
            fb = TryOn.Feedback(step=step, total_steps=STEPS,
                                elapsed_sec=time.monotonic() - start, eta_sec=0.0)
            if preview is not None:
                fb.preview = preview
            goal_handle.publish_feedback(fb)
            time.sleep(0.05)
        time.sleep(0.1)  # rclpy drops feedback that arrives after the result
        goal_handle.succeed()
        mask = np.full(person.shape[:2], 255, np.uint8)
        return TryOn.Result(
            image=image_conv.from_rgb(255 - person, goal_handle.request.person_image.header),
            mask=image_conv.from_mono(mask), seed=goal_handle.request.seed,
            timings=[StageTiming(name='total', seconds=time.monotonic() - start)],
            error_code=TryOn.Result.SUCCESS, message='ok')


def main() -> None:
    common.run(EchoServer)


if __name__ == '__main__':
    main()
