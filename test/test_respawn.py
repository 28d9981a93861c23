"""
tryon_bringup --respawn: a node killed with SIGKILL comes back and frames flow again.

Real node processes over loopback DDS; the test process subscribes to image_raw.
"""

import os
import re
import signal
import time

import pytest
from rclpy.qos import qos_profile_sensor_data
from rosutil import free_domain_id, HANG_GUARD, LIB, Proc, ros_env, Spinner, wait_until
from sensor_msgs.msg import Image

pytestmark = pytest.mark.stack  # node processes: not in make check


def _pids(log: str, node: str) -> list[int]:
    return [int(pid) for pid in re.findall(rf'started {node} \(pid (\d+)\)', log)]


def test_killed_camera_comes_back_and_the_others_keep_running(tmp_path):
    domain = free_domain_id()
    bringup = Proc([LIB / 'tryon_bringup', '--nodes', 'camera_node,segmentation_node',
                    '--respawn', '--respawn-delay', '0.5', '--camera-source',
                    'sample:astronaut', '--set', 'camera.fps=5.0', '--set', 'camera.width=160',
                    '--set', 'camera.height=120', '--log-dir', tmp_path / 'logs'],
                   ros_env(domain), tmp_path / 'bringup.log')
    client = Spinner('respawn_test_client', domain)
    stamps: list = []
    client.node.create_subscription(Image, 'image_raw', lambda m: stamps.append(
        m.header.stamp.sec + m.header.stamp.nanosec * 1e-9), qos_profile_sensor_data)
    try:

        def until(condition, what: str) -> None:
            def check():
                assert bringup.popen.poll() is None, bringup.log()
                return condition()
            wait_until(check, what=lambda: f'{what}:\n{bringup.log()}', interval=0.1)

        until(lambda: len(stamps) >= 3, 'camera frames')
        camera, = _pids(bringup.log(), 'camera_node')
        segmentation, = _pids(bringup.log(), 'segmentation_node')
        os.kill(camera, signal.SIGKILL)
        killed = time.time()
        bringup.wait_for_log('restarting it in 0.5 s', timeout=HANG_GUARD)
        until(lambda: len(_pids(bringup.log(), 'camera_node')) >= 2, 'a new camera_node')
        until(lambda: stamps and stamps[-1] > killed, 'frames of the new camera process')
        assert 'camera_node killed by SIGKILL' in bringup.log()
        assert _pids(bringup.log(), 'segmentation_node') == [segmentation]
        assert os.path.exists(f'/proc/{segmentation}') and bringup.popen.poll() is None
    finally:
        client.close()
        code = bringup.stop()
    assert code == 0, bringup.log()
    assert 'all nodes stopped' in bringup.log()
