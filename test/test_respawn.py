"""
tryon_bringup --respawn: a node killed with SIGKILL comes back and frames flow again.

Real node processes over loopback DDS; the test process subscribes to image_raw. Bringup
gives back the killed node's Fast DDS segment, and touches no other process's files.
"""

import os
import re
import signal
import time

import pytest
from rclpy.qos import qos_profile_sensor_data
from rosutil import free_domain_id, HANG_GUARD, LIB, Proc, ros_env, Spinner, wait_until
from sensor_msgs.msg import Image
from vton_ros.supervision import dds_shm

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
        dead = [n for n in dds_shm.own_files(camera) if dds_shm.is_segment(n)]
        alive = wait_until(lambda: [n for n in dds_shm.own_files(segmentation)
                                    if dds_shm.is_segment(n)],
                           what="segmentation_node's DDS participant")
        left = dds_shm.names_bytes(dead)
        os.kill(camera, signal.SIGKILL)
        killed = time.time()
        bringup.wait_for_log('restarting it in 0.5 s', timeout=HANG_GUARD)
        bringup.wait_for_log(f'left by camera_node (pid {camera}, killed by SIGKILL)',
                             timeout=HANG_GUARD)
        print(f'killed camera_node: its segment {left} -> {dds_shm.names_bytes(dead)} bytes')
        assert dead and left > 0 and dds_shm.names_bytes(dead) == 0  # given back
        assert alive and dds_shm.names_bytes(alive) > 0  # the live node's: untouched
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
    assert bringup.log().count('removed') == 1  # the kill only, not the clean stop
