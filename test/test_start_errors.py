"""
Clear errors and usable metadata from real node processes over loopback DDS.

A node that cannot start says why in one line under its own name (no traceback): damaged
weights, an explicit CUDA device on a machine without one, a mistyped parameter. Run-time
parameter changes are refused in the schema's words. camera_info carries a pinhole model.
"""

import socket
import subprocess

from helpers import OST_YAML
import pytest
from rcl_interfaces.msg import Parameter as ParameterMsg, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import qos_profile_sensor_data
from rosutil import free_domain_id, LIB, node_argv, Proc, ROOT, ros_env, signal_stop_lines, \
    Spinner, start_fails, wait_until
from safetensors.torch import save_file
from sensor_msgs.msg import CameraInfo
from stack import server_params
import torch
from vton_ros.pipeline import weights
from vton_ros.supervision import dds_shm

HANG_GUARD = 300.0  # seconds: only against a hang on a loaded machine


def test_check_safetensors_names_the_damage(tmp_path):
    path = tmp_path / 'model.safetensors'
    save_file({'a': torch.zeros(64), 'b': torch.ones(8)}, str(path))
    weights.check_safetensors(str(path))  # whole
    data = path.read_bytes()
    for content, problem in ((data[:-10], 'truncated'), (data[:5], 'not a whole safetensors'),
                             (data + b'xx', 'extra bytes'),
                             (data[:8] + b'{' * (len(data) - 8), 'does not parse')):
        path.write_bytes(content)
        with pytest.raises(weights.CorruptWeightsError, match=problem) as err:
            weights.check_safetensors(str(path), 'VAE')
        assert str(path) in str(err.value) and 'fetch_weights' in str(err.value)


@pytest.mark.parametrize('damage', ['truncated unet', 'truncated attention',
                                    'attention in another layout'])
@pytest.mark.stack
def test_damaged_weights_stop_tryon_server_with_one_line(tmp_path, tiny_weights,  # noqa: F811
                                                         damage):
    copy = tmp_path / 'weights'
    subprocess.run(['cp', '-r', str(tiny_weights), str(copy)], check=True)
    params = dict(server_params(copy), **{'catvton.attn_version': 'mix'})  # the file damaged
    unet = copy / 'stable-diffusion-inpainting' / 'unet' / 'diffusion_pytorch_model.safetensors'
    attention = copy / 'CatVTON' / 'mix-48k-1024' / 'attention' / 'model.safetensors'
    if damage == 'truncated unet':
        broken, words = unet, 'truncated'
        unet.write_bytes(unet.read_bytes()[:unet.stat().st_size // 2])
    elif damage == 'truncated attention':
        broken, words = attention, 'truncated'
        attention.write_bytes(attention.read_bytes()[:-1000])
    else:
        broken, words = attention, 'module index'
        save_file({'model.diffusion.weight': torch.zeros(3, 3)}, str(attention))
    out = start_fails(node_argv('tryon_server', params), ros_env(free_domain_id()))
    assert '[tryon_server]: cannot start' in out and str(broken) in out and words in out, out


@pytest.mark.stack
@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a machine without CUDA')
@pytest.mark.parametrize('node,name', [('segmentation_node', 'segmentation.device'),
                                       ('tryon_server', 'catvton.device'),
                                       ('tryon_server', 'segmentation.device')])
def test_explicit_cuda_without_cuda_stops_the_node(tiny_weights, node, name):  # noqa: F811
    params = dict(server_params(tiny_weights)) if node == 'tryon_server' else {}
    params[name] = 'cuda'
    out = start_fails(node_argv(node, params), ros_env(free_domain_id()))
    assert f'[{node}]: cannot start' in out and f'{name}: ' in out, out
    assert "'auto' or 'cpu'" in out, out


@pytest.mark.stack
def test_parameter_errors_in_words(tmp_path):
    env = ros_env(free_domain_id())
    env[dds_shm.RECORDS_ENV] = str(tmp_path / 'records')  # each node's Fast DDS files
    out = start_fails(node_argv('camera_node', {'camera.fps': 4}), env)
    assert '[camera_node]: cannot start' in out
    assert 'camera.fps expects a double, got integer 4; write 4.0' in out, out
    typo = tmp_path / 'typo.yaml'  # rclpy alone would ignore the unknown name
    typo.write_text('/**/camera_node:\n  ros__parameters:\n    camera:\n      fsp: 2.0\n')
    out = start_fails(node_argv('camera_node', params_file=str(typo)), env)
    assert "unknown setting 'camera.fsp'; did you mean camera.fps" in out, out
    # its constructor raised after its DDS participant existed: that was destroyed too (the
    # 64 MB segment outlived each such process, where no supervisor had its name)
    segments = [name for path in (tmp_path / 'records').iterdir()
                for name in path.read_text().split() if dds_shm.is_segment(name)]
    assert len(segments) == 2 and dds_shm.names_bytes(segments) == 0, segments
    shared = tmp_path / 'shared.yaml'  # one file for all nodes: others' settings are fine
    shared.write_text('/**:\n  ros__parameters:\n    catvton:\n      seed: 3\n'
                      '    camera:\n      fps: 2.0\n    robot_name: mirror\n')
    camera = Proc(node_argv('camera_node', params_file=str(shared)), env,
                  tmp_path / 'camera.log')
    camera.wait_for_log('not vton_ros settings: robot_name', timeout=HANG_GUARD)
    client = None
    try:
        camera.wait_for_log('camera source', timeout=HANG_GUARD)
        client = Spinner('param_client', int(env['ROS_DOMAIN_ID']))
        service = client.node.create_client(SetParameters, '/camera_node/set_parameters')
        assert service.wait_for_service(timeout_sec=HANG_GUARD)

        def set_param(name: str, **value) -> tuple:
            msg = ParameterMsg(name=name, value=ParameterValue(**value))
            result = client.call(service, SetParameters.Request(parameters=[msg])).results[0]
            return result.successful, result.reason

        integer = {'type': ParameterType.PARAMETER_INTEGER, 'integer_value': 4}
        assert set_param('camera.fps', **integer) == (
            False, 'camera.fps expects a double, got integer 4; write 4.0')
        ok, reason = set_param('camera.fpss', type=ParameterType.PARAMETER_DOUBLE,
                               double_value=4.0)
        assert not ok and 'did you mean camera.fps' in reason, reason
        ok, reason = set_param('', **integer)
        assert not ok and 'empty setting name' in reason, reason
        ok, reason = set_param('catvton.seed', **integer)
        assert not ok and 'belongs to tryon_server' in reason, reason
        assert set_param('camera.fps', type=ParameterType.PARAMETER_DOUBLE,
                         double_value=3.0) == (True, '')
    finally:
        if client is not None:
            client.close()
        assert camera.stop() == 0, camera.log()


@pytest.mark.stack
def test_camera_info_carries_a_pinhole_model(tmp_path):
    env = ros_env(free_domain_id())
    calibration = tmp_path / 'ost.yaml'
    calibration.write_text(OST_YAML)
    size = {'camera.width': 320, 'camera.height': 240, 'camera.fps': 4.0}
    cameras = [Proc(node_argv('camera_node', dict(size, **{'camera.hfov_deg': 90.0}),
                              extra=['-r', '__ns:=/hfov']), env, tmp_path / 'hfov.log'),
               Proc(node_argv('camera_node', dict(size, **{
                   'camera.calibration_file': str(calibration), 'camera.mirror': False}),
                   extra=['-r', '__ns:=/calibrated']), env, tmp_path / 'calibrated.log')]
    client = Spinner('info_client', int(env['ROS_DOMAIN_ID']))
    infos: dict = {}
    try:
        for ns in ('hfov', 'calibrated'):
            client.node.create_subscription(CameraInfo, f'/{ns}/camera_info',
                                            lambda m, ns=ns: infos.setdefault(ns, m),
                                            qos_profile_sensor_data)
        wait_until(lambda: len(infos) == 2, HANG_GUARD, 'camera_info of both cameras')
        hfov, calibrated = infos['hfov'], infos['calibrated']
        assert (hfov.width, hfov.height) == (320, 240) and hfov.header.frame_id == 'camera'
        assert list(hfov.k) == pytest.approx([160.0, 0, 159.5, 0, 160.0, 119.5, 0, 0, 1])
        assert hfov.p[0] == pytest.approx(160.0) and hfov.distortion_model == 'plumb_bob'
        # the 640x480 calibration, published at 320x240
        assert list(calibrated.k) == pytest.approx([300.0, 0, 150.0, 0, 305.0, 125.0, 0, 0, 1])
        assert list(calibrated.d) == pytest.approx([0.1, -0.2, 0.0, 0.0, 0.0])
        assert calibrated.p[0] == pytest.approx(295.0)
    finally:
        client.close()
        assert [c.stop() for c in cameras] == [0, 0], [c.log() for c in cameras]


@pytest.mark.stack
def test_mirror_ui_refuses_a_network_address_without_a_token():
    out = start_fails(node_argv('mirror_ui', {'ui.host': '0.0.0.0'}), ros_env(free_domain_id()))
    assert 'mirror_ui' in out and 'set ui.token' in out


@pytest.mark.stack
def test_bringup_without_weights_suggests_the_demo_profile_first(tmp_path):
    env = ros_env(free_domain_id(), HF_HUB_CACHE=str(tmp_path / 'empty_cache'),
                  HF_HUB_OFFLINE='1')
    run = subprocess.run([LIB / 'tryon_bringup'], env=env, capture_output=True, text=True,
                         timeout=HANG_GUARD)
    lines = (run.stdout + run.stderr).splitlines()
    assert run.returncode == 2 and 1 <= len(lines) <= 3, lines
    assert '`tryon_bringup --profile cpu,demo`' in lines[0], lines
    assert 'catvton.base_model=booksforcharlie/stable-diffusion-inpainting' in lines[1], lines
    assert 'fetch_weights' in lines[2] and not [x for x in lines if 'started' in x], lines


@pytest.mark.stack
def test_bringup_prints_every_line_of_every_node_whole(tmp_path, tiny_weights):
    env = ros_env(free_domain_id())
    sets = []
    for name, value in dict(server_params(tiny_weights), **{
            'camera.fps': 15.0, 'segmentation.max_rate': 15.0}).items():
        sets += ['--set', f'{name}={value}']
    bringup = Proc([LIB / 'tryon_bringup', *sets], env, tmp_path / 'bringup.log')
    try:
        bringup.wait_for_log('configured and activated', count=3)
    finally:
        code = bringup.stop(timeout=120)
    out = bringup.log()
    assert code == 0 and out.rstrip().endswith('tryon_bringup: all nodes stopped'), out
    prefixes = ('[camera_node] ', '[segmentation_node] ', '[tryon_server] ', 'tryon_bringup: ')
    for line in out.splitlines():  # no empty line, no line carrying a second node's line
        assert line.startswith(prefixes), repr(line)
        assert sum(line.count(p) for p in prefixes[:3]) == 1 or \
            line.startswith('tryon_bringup: '), repr(line)
    for node in ('camera_node', 'segmentation_node', 'tryon_server'):  # each one's stop line
        assert signal_stop_lines(out, node) == 1, out


@pytest.fixture()
def busy_port():
    """Yield a port of 127.0.0.1 that another program listens on."""
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


@pytest.mark.stack
def test_a_port_in_use_is_said_before_any_url(busy_port):
    env = ros_env(free_domain_id())
    out = start_fails(node_argv('mirror_ui', {'ui.port': busy_port}), env)
    assert f'port {busy_port} on 127.0.0.1 is already in use' in out, out
    assert f'PORT={busy_port + 1} make mirror' in out and f'ui.port={busy_port + 1}' in out, out
    assert 'http://' not in out, out  # never the address of someone else's page
    run = subprocess.run(['bash', ROOT / 'scripts' / 'mirror.sh'], env=dict(
        env, PORT=str(busy_port)), cwd=ROOT, capture_output=True, text=True,
        timeout=HANG_GUARD)
    lines = (run.stdout + run.stderr).splitlines()
    assert run.returncode == 2 and len(lines) == 1, lines  # at once: no node started
    assert f'port {busy_port} is already in use' in lines[0] and 'ui.port' in lines[0]
    assert f'PORT={busy_port + 1} make mirror' in lines[0] and 'http://' not in lines[0]
