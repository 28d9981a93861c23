"""
launch/tryon.launch.py under the upstream launch and launch_ros.

Skipped where they are not installed (the pip-only dev machines; a ROS install has them).

Real node processes over loopback DDS, tiny random CatVTON weights.
"""

import json
import os
import re
import signal
import urllib.request

import pytest
from rcl_interfaces.srv import GetParameters
from rosutil import free_domain_id, Proc, ROOT, ros_env, script_argv, Spinner
from stack import server_params
from vton_ros.settings import files as param_files
from vton_ros.settings import schema as params

pytestmark = pytest.mark.stack  # node processes: not in make check

pytest.importorskip('launch_ros')

HANG_GUARD = 300.0  # seconds: only against a hang on a loaded machine
LAUNCH = ROOT / 'launch' / 'tryon.launch.py'
ACTIVE = 'tryon_server]: configured and activated'  # the stack is up (the last node ready)


def params_file(path, weights, ui=None, **server) -> str:
    """Write a config in the wildcard form of config/*.yaml for the tiny weights."""
    values = {k: str(v) for k, v in server_params(weights).items()}
    values.update({'catvton.num_inference_steps': 3, **server})
    nodes = {'camera_node': {'camera.fps': 4.0, 'camera.source': 'sample:astronaut'},
             'segmentation_node': {'segmentation.device': 'cpu'},
             'tryon_server': {k: params.param(k).validate(v) for k, v in values.items()}}
    if ui is not None:
        nodes['mirror_ui'] = ui
    path.write_text(param_files.dump_yaml(nodes))
    return str(path)


def launch_proc(tmp_path, env: dict, *args: str) -> Proc:
    """Run what `ros2 launch vton_ros tryon.launch.py ARGS` does; output in launch.log."""
    return Proc(script_argv(ROOT / 'test' / 'processes' / 'ros2_launch.py', str(LAUNCH), *args),
                env, tmp_path / 'launch.log')


def test_namespace_and_ctrl_c(tmp_path, tiny_weights):  # noqa: F811
    env = ros_env(free_domain_id())
    file = params_file(tmp_path / 'ok.yaml', tiny_weights)
    launch = launch_proc(tmp_path, env, f'params_file:={file}', 'namespace:=mirror_a')
    client = None
    try:  # Ctrl-C after start-up: each node then says 'SIGINT: shutting down'
        launch.wait_for_log(ACTIVE, timeout=HANG_GUARD)
        client = Spinner('launch_test_client', int(env['ROS_DOMAIN_ID']))
        service = client.node.create_client(GetParameters,
                                            '/mirror_a/tryon_server/get_parameters')
        assert service.wait_for_service(timeout_sec=HANG_GUARD)
        request = GetParameters.Request(names=['catvton.num_inference_steps'])
        values = client.wait(service.call_async(request), HANG_GUARD).values
        assert values[0].integer_value == 3  # the /**/tryon_server key applied in /mirror_a
    finally:
        if client is not None:
            client.close()
        code = launch.stop(HANG_GUARD)  # Ctrl-C in the terminal
    log = launch.log()
    assert code == 0, log
    assert log.count('SIGINT: shutting down') == 3, log  # each node stopped by itself
    assert log.count('finished cleanly') == 3, log
    assert 'Traceback' not in log and 'KeyboardInterrupt' not in log, log


def test_a_node_that_cannot_start_shuts_the_launch_down(tmp_path, tiny_weights):  # noqa: F811
    env = ros_env(free_domain_id())
    file = params_file(tmp_path / 'bad.yaml', tiny_weights,
                       **{'catvton.base_model': str(tmp_path / 'no_weights')})
    launch = launch_proc(tmp_path, env, f'params_file:={file}')
    code = launch.popen.wait(HANG_GUARD)
    log = launch.log()
    assert code == 1, log
    assert 'tryon_server exited with code 1: ' in log and 'no_weights' in log, log
    assert '[tryon_server]: cannot start' in log, log
    assert log.count('finished cleanly') == 2, log  # camera and segmentation were stopped


def test_a_killed_node_is_named_with_its_signal(tmp_path, tiny_weights):  # noqa: F811
    env = ros_env(free_domain_id())
    file = params_file(tmp_path / 'ok.yaml', tiny_weights)
    launch = launch_proc(tmp_path, env, f'params_file:={file}')
    try:
        out = launch.wait_for_log('model loaded', timeout=HANG_GUARD)
        pid = int(re.search(r'\[segmentation_node-\d+\]: process started with pid \[(\d+)\]',
                            out)[1])
        os.kill(pid, signal.SIGKILL)
        code = launch.popen.wait(HANG_GUARD)
    finally:
        launch.stop()
    log = launch.log()
    assert code == 1, log
    assert 'segmentation_node killed by SIGKILL; stopping the other nodes' in log, log


def test_ui_true_serves_the_mirror_page(tmp_path, tiny_weights):  # noqa: F811
    env = ros_env(free_domain_id())
    ui = {'ui.port': 0, 'garments.catalog_dir': 'package://vton_ros/garments'}
    file = params_file(tmp_path / 'ui.yaml', tiny_weights, ui=ui)
    launch = launch_proc(tmp_path, env, f'params_file:={file}', 'namespace:=mirror_a', 'ui:=true')
    try:
        out = launch.wait_for_log('mirror page at', timeout=HANG_GUARD)
        url = re.search(r'mirror page at (http://127\.0\.0\.1:\d+/)', out)[1]
        with urllib.request.urlopen(url, timeout=HANG_GUARD) as page:
            assert page.status == 200
            assert "default-src 'none'" in page.headers['Content-Security-Policy']
            assert 'data-testid="camera"' in page.read().decode()
        with urllib.request.urlopen(url + 'api/garments', timeout=HANG_GUARD) as listing:
            ids = {item['id'] for item in json.load(listing)['garments']}
        assert 'red_striped_shirt' in ids, ids  # package:// resolved in the launched node
        launch.wait_for_log(ACTIVE, timeout=HANG_GUARD)
    finally:
        code = launch.stop(HANG_GUARD)  # Ctrl-C in the terminal
    log = launch.log()
    assert code == 0, log
    assert log.count('SIGINT: shutting down') == 4, log  # the page's node too
    assert log.count('finished cleanly') == 4, log
    assert 'Traceback' not in log, log


def test_respawn_restarts_a_killed_node(tmp_path, tiny_weights):  # noqa: F811
    env = ros_env(free_domain_id())
    file = params_file(tmp_path / 'ok.yaml', tiny_weights)
    launch = launch_proc(tmp_path, env, f'params_file:={file}', 'respawn:=true',
                         'respawn_delay:=0.5')
    try:
        out = launch.wait_for_log(ACTIVE, timeout=HANG_GUARD)
        pid = re.search(r'\[camera_node-\d+\]: process started with pid \[(\d+)\]', out)[1]
        os.kill(int(pid), signal.SIGKILL)
        # the launch restarts it: a new camera_node process comes up
        launch.wait_for_log('camera_node]: configured and activated', HANG_GUARD, count=2)
    finally:
        code = launch.stop(HANG_GUARD)  # Ctrl-C in the terminal
    log = launch.log()
    assert code == 0, log  # the others kept running, and all stopped on Ctrl-C
    assert 'stopping the other nodes' not in log, log
    assert log.count('SIGINT: shutting down') == 3, log
