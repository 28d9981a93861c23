"""
A TryOn action server made of the action's plain services: a server that misbehaves.

Usage: raw_action_server.py MODE. ``slow_accept``: answers a goal only after ACCEPT_DELAY
seconds (prints ``goal received`` at once) and ends it CANCELED once a cancel for it
arrives. ``expired``: accepts goals at once and answers their result request with status
UNKNOWN and an empty result, as rclpy does for a result that expired. Prints ``ready``.
"""

import sys
import threading
import time

from action_msgs.msg import GoalInfo, GoalStatus, GoalStatusArray
import rclpy
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import qos_profile_action_status_default
from vton_interfaces.action import TryOn

ACCEPT_DELAY = 5.0  # seconds between a goal's arrival and its acceptance (slow_accept)


class RawServer:
    """The action's services and topics, answered by hand."""

    def __init__(self, node, mode: str) -> None:
        self.node, self.mode = node, mode
        self.canceled = threading.Event()
        group = ReentrantCallbackGroup()
        impl = TryOn.Impl
        node.create_service(impl.SendGoalService, 'tryon/_action/send_goal', self.goal,
                            callback_group=group)
        node.create_service(impl.CancelGoalService, 'tryon/_action/cancel_goal', self.cancel,
                            callback_group=group)
        node.create_service(impl.GetResultService, 'tryon/_action/get_result', self.result,
                            callback_group=group)
        node.create_publisher(impl.FeedbackMessage, 'tryon/_action/feedback', 10)
        node.create_publisher(GoalStatusArray, 'tryon/_action/status',
                              qos_profile_action_status_default)

    def goal(self, request, response):
        print(f'goal received {bytes(request.goal_id.uuid).hex()}', flush=True)
        if self.mode == 'slow_accept':
            time.sleep(ACCEPT_DELAY)
        print('goal accepted', flush=True)
        response.accepted = True
        return response

    def cancel(self, request, response):
        print(f'cancel for {bytes(request.goal_info.goal_id.uuid).hex()}', flush=True)
        response.goals_canceling = [GoalInfo(goal_id=request.goal_info.goal_id)]
        self.canceled.set()
        return response

    def result(self, request, response):
        if self.mode == 'expired':
            response.status = GoalStatus.STATUS_UNKNOWN
            return response
        self.canceled.wait()
        response.status = GoalStatus.STATUS_CANCELED
        response.result = TryOn.Result(error_code=TryOn.Result.CANCELED, message='canceled')
        return response


def main() -> None:
    rclpy.init()
    node = rclpy.create_node('raw_action_server')
    RawServer(node, sys.argv[1])
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    print('ready', flush=True)
    executor.spin()


if __name__ == '__main__':
    main()
