"""
A TryOn action server made of the action's plain services: a server that misbehaves.

Usage: raw_action_server.py MODE. ``slow_accept``: answers a goal only after ACCEPT_DELAY
seconds (prints ``goal received`` at once) and ends it CANCELED once a cancel for it
arrives. ``expired``: accepts goals at once and answers their result request with status
UNKNOWN and an empty result, as rclpy does for a result that expired. ``lost_reply``: lists
a goal as executing on the status topic but never answers its request (the reply a client
lost, as Kilted's rclpy can), then ends it PIPELINE_ERROR. ``no_reply``: neither answers a
goal request in time nor lists the goal (a request lost with no trace). Prints ``ready``.
"""

import sys
import threading
import time

from action_msgs.msg import GoalInfo, GoalStatus, GoalStatusArray
import rclpy
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.qos import qos_profile_action_status_default
from vton_interfaces.action import TryOn

ACCEPT_DELAY = 5.0  # seconds between a goal's arrival and its acceptance (slow_accept)
LOST_REPLY_HOLD = 120.0  # seconds a lost_reply goal request is held unanswered


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
        self.status = node.create_publisher(GoalStatusArray, 'tryon/_action/status',
                                            qos_profile_action_status_default)

    def goal(self, request, response):
        print(f'goal received {bytes(request.goal_id.uuid).hex()}', flush=True)
        if self.mode == 'lost_reply':
            info = GoalInfo(goal_id=request.goal_id)
            self.status.publish(GoalStatusArray(status_list=[
                GoalStatus(goal_info=info, status=GoalStatus.STATUS_EXECUTING)]))
            print('goal listed, its reply withheld', flush=True)
            self.canceled.wait(LOST_REPLY_HOLD)  # the request is never answered in time
        if self.mode == 'no_reply':
            print('goal neither listed nor answered', flush=True)
            self.canceled.wait(LOST_REPLY_HOLD)
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
        if self.mode == 'lost_reply':
            response.status = GoalStatus.STATUS_ABORTED
            response.result = TryOn.Result(error_code=TryOn.Result.PIPELINE_ERROR,
                                           message='ended by raw_action_server lost_reply')
            return response
        self.canceled.wait()
        response.status = GoalStatus.STATUS_CANCELED
        response.result = TryOn.Result(error_code=TryOn.Result.CANCELED, message='canceled')
        return response


def main() -> None:
    rclpy.init()
    node = rclpy.create_node('raw_action_server')
    server = RawServer(node, sys.argv[1])
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    print('ready', flush=True)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:  # held requests return, so the executor's threads end and the process exits
        server.canceled.set()


if __name__ == '__main__':
    main()
