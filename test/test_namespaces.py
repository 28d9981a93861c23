"""
Two complete stacks, /mirror_a and /mirror_b, on one ROS domain, from one parameter file.

The file uses the wildcard keys of config/*.yaml (/**/NODE) plus one section per namespace
for the camera. Stack A runs the node executables with the file and a namespace remap
(what launch's namespace argument does); stack B runs tryon_bringup --namespace. Real
processes over loopback DDS, tiny random CatVTON weights.
"""

import subprocess

import cv2
import numpy as np
import pytest
from rcl_interfaces.srv import GetParameters
from rclpy.parameter import parameter_value_to_python
from rosutil import ActionClient, free_domain_id, LIB, node_argv, Proc, ros_env, Spinner
from stack import server_params
from vton_interfaces.action import TryOn
from vton_ros.cli.tryon_bringup import STACK
from vton_ros.media import samples
from vton_ros.media.camera_source import fit
from vton_ros.nodes import image_conv
from vton_ros.pipeline import preprocess
from vton_ros.settings import files as param_files

pytestmark = pytest.mark.stack  # node processes: not in make check

HANG_GUARD = 300.0  # seconds: only against a hang on a loaded machine
SIZE = (160, 120)  # camera width, height
PORTRAITS = {'mirror_a': 'astronaut', 'mirror_b': 'grace_hopper'}
STEPS = 3  # not the default (10): proves the file reached both servers


def params_file(path, weights) -> str:
    """Write the shared file: wildcard sections plus a camera section per namespace."""
    server = {k: str(v) for k, v in server_params(weights).items()
              if k.startswith(('catvton.base_model', 'catvton.vae', 'catvton.attn_ckpt'))}
    server.update({'catvton.device': 'cpu', 'catvton.precision': 'fp32',
                   'catvton.height': 64, 'catvton.width': 48, 'segmentation.device': 'cpu',
                   'catvton.num_inference_steps': STEPS, 'tryon.pair_wait': HANG_GUARD,
                   'tryon.pair_max_age': HANG_GUARD,
                   # the strips outside the centre crop are each camera's own: whose frame
                   'catvton.framing': 'centre'})
    text = param_files.dump_yaml({
        'camera_node': {'camera.fps': 2.0, 'camera.width': SIZE[0], 'camera.height': SIZE[1]},
        'segmentation_node': {'segmentation.device': 'cpu', 'segmentation.max_rate': 2.0},
        'tryon_server': server})
    for namespace, portrait in PORTRAITS.items():
        text += (f'/{namespace}/camera_node:\n  ros__parameters:\n    camera:\n'
                 f'      source: sample:{portrait}\n      frame_id: cam_{namespace[-1]}\n')
    path.write_text(text)
    assert '/**/tryon_server:' in text
    return str(path)


@pytest.fixture(scope='module')
def stacks(tmp_path_factory, tiny_weights):  # noqa: F811
    tmp = tmp_path_factory.mktemp('namespaces')
    env = ros_env(free_domain_id())
    file = params_file(tmp / 'mirrors.yaml', tiny_weights)
    procs = [Proc(node_argv(name, params_file=file, extra=['-r', '__ns:=/mirror_a']), env,
                  tmp / f'a_{name}.log') for name in STACK]
    procs.append(Proc([LIB / 'tryon_bringup', '--params-file', file, '--namespace',
                       'mirror_b'], env, tmp / 'b_bringup.log'))
    client = None
    try:
        procs[2].wait_for_log('model loaded', timeout=HANG_GUARD)
        procs[3].wait_for_log('model loaded', timeout=HANG_GUARD)
        client = Spinner('mirror_test_client', int(env['ROS_DOMAIN_ID']))
        client.env = env
        yield client
    finally:
        if client is not None:
            client.close()
        codes = [p.stop() for p in procs]
        assert codes == [0] * len(procs), [p.log()[-2000:] for p in procs]


def get_parameters(client: Spinner, node: str, names: list) -> list:
    """Ask a node's parameter service for values (what `ros2 param get` does)."""
    service = client.node.create_client(GetParameters, f'{node}/get_parameters')
    assert service.wait_for_service(timeout_sec=HANG_GUARD)
    response = client.call(service, GetParameters.Request(names=names), 'get_parameters')
    client.node.destroy_client(service)
    return [parameter_value_to_python(v) for v in response.values]


@pytest.mark.parametrize('namespace', list(PORTRAITS))
def test_both_stacks_report_the_file_values(stacks, namespace):
    assert get_parameters(stacks, f'/{namespace}/tryon_server',
                          ['catvton.num_inference_steps', 'catvton.device']) == [STEPS, 'cpu']
    assert get_parameters(stacks, f'/{namespace}/camera_node',
                          ['camera.source', 'camera.frame_id', 'camera.fps']) == [
        f'sample:{PORTRAITS[namespace]}', f'cam_{namespace[-1]}', 2.0]
    assert get_parameters(stacks, f'/{namespace}/segmentation_node',
                          ['segmentation.max_rate']) == [2.0]


def test_goals_to_both_at_once_use_their_own_camera_and_mask(stacks):
    garment = image_conv.from_rgb(samples.garment('tshirt', height=96, width=72))
    started = {}
    for namespace in PORTRAITS:
        action = ActionClient(stacks.node, TryOn, f'/{namespace}/tryon')
        assert action.wait_for_server(timeout_sec=HANG_GUARD)
        feedback = []
        goal = TryOn.Goal(garment_image=garment, cloth_type='upper')
        future = action.send_goal_async(goal, feedback_callback=lambda m, f=feedback: f.append(m))
        started[namespace] = (future, feedback)
    box = preprocess.centre_crop_box(SIZE[1], SIZE[0], 64, 48)
    strips = {ns: fit(samples.portrait(p), *SIZE, mirror=True)[:, :box.left]
              for ns, p in PORTRAITS.items()}
    assert not np.array_equal(strips['mirror_a'], strips['mirror_b'])
    for namespace, (future, feedback) in started.items():
        handle = stacks.wait(future, HANG_GUARD)
        assert handle.accepted
        result = stacks.wait(handle.get_result_async(), HANG_GUARD).result
        assert result.error_code == TryOn.Result.SUCCESS, result.message
        assert result.image.header.frame_id == f'cam_{namespace[-1]}'  # its own camera
        assert result.mask.header.frame_id == f'cam_{namespace[-1]}'  # and its own mask
        assert {m.feedback.total_steps for m in feedback} == {STEPS}
        image = image_conv.to_rgb(result.image)
        assert image.shape[1::-1] == SIZE
        # outside the generated crop the result is its own camera's frame, pixel for pixel
        assert np.array_equal(image[:, :box.left], strips[namespace])


def test_tryon_client_in_a_namespace(stacks, tmp_path):
    garment, out = tmp_path / 'garment.png', tmp_path / 'result.png'
    cv2.imwrite(str(garment), cv2.cvtColor(samples.garment('skirt'), cv2.COLOR_RGB2BGR))
    run = subprocess.run([LIB / 'tryon_client', '--namespace', 'mirror_b', '--garment', garment,
                          '--cloth-type', 'upper', '--out', out], env=stacks.env,
                         capture_output=True, text=True, timeout=HANG_GUARD)
    assert run.returncode == 0, run.stdout + run.stderr
    result = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    box = preprocess.centre_crop_box(SIZE[1], SIZE[0], 64, 48)
    mirror_b = fit(samples.portrait(PORTRAITS['mirror_b']), *SIZE, mirror=True)
    assert np.array_equal(result[:, :box.left], mirror_b[:, :box.left])  # /mirror_b camera
