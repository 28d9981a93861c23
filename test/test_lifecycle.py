"""
Managed nodes driven through their real lifecycle services, as ``ros2 lifecycle`` does.

Each node runs as its own process with lifecycle.autostart false; this test process calls
lifecycle_msgs ChangeState/GetState, watches /diagnostics and the topics, and sends goals.
"""

from pathlib import Path
import re

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
import pytest
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from rosutil import ActionClient, free_domain_id, HANG_GUARD, LIB, node_argv, Proc, ros_env, \
    Spinner, wait_until
from sensor_msgs.msg import Image
from stack import person_goal, server_params
from vton_interfaces.action import TryOn
from vton_ros.settings import files as param_files

pytestmark = pytest.mark.stack  # node processes: not in make check

R = TryOn.Result
MANUAL = {'lifecycle.autostart': False, 'diagnostics.period': 0.2}


class Lifecycle:
    """A test-side client of nodes' lifecycle and parameter services and their topics."""

    def __init__(self, domain: int) -> None:
        self.spinner = Spinner('lifecycle_test_client', domain)
        self.node = self.spinner.node
        self.frames = 0
        self.states: dict = {}  # node name -> last lifecycle_state on /diagnostics
        self.node.create_subscription(Image, 'image_raw', self._on_frame,
                                      qos_profile_sensor_data)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 50)
        self.action = ActionClient(self.node, TryOn, 'tryon')

    def _on_frame(self, _msg) -> None:
        self.frames += 1

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            self.states[status.name.rsplit('/', 1)[-1]] = values.get('lifecycle_state')

    def _call(self, node: str, service: str, kind, request, idempotent: bool = True):
        client = self.node.create_client(kind, f'/{node}/{service}')
        try:
            assert client.wait_for_service(timeout_sec=HANG_GUARD), f'no /{node}/{service}'
            if idempotent:  # sent again if a reply is lost (rosutil.Spinner.call)
                return self.spinner.call(client, request, f'/{node}/{service}')
            return self.spinner.wait(client.call_async(request), HANG_GUARD)
        finally:
            self.node.destroy_client(client)

    def state(self, node: str) -> str:
        """GetState: the node's lifecycle state label."""
        return self._call(node, 'get_state', GetState, GetState.Request()).current_state.label

    def change(self, node: str, label: str) -> bool:
        """Call ChangeState with a transition label (configure, ...); True on success."""
        request = ChangeState.Request(transition=Transition(label=label))
        return self._call(node, 'change_state', ChangeState, request, idempotent=False).success

    def set_param(self, node: str, name: str, value):
        """Set one parameter of a node; return the SetParametersResult."""
        request = SetParameters.Request(
            parameters=[Parameter(name, value=value).to_parameter_msg()])
        return self._call(node, 'set_parameters', SetParameters, request).results[0]

    def wait_for(self, condition, what: str, timeout: float = HANG_GUARD) -> None:
        """Wait until ``condition()`` holds (a guard against hangs only)."""
        wait_until(condition, timeout, what)

    def goal(self, goal: TryOn.Goal, on_feedback=None):
        """Send a goal; return its handle (None if rejected)."""
        future = self.action.send_goal_async(goal, feedback_callback=on_feedback)
        handle = self.spinner.wait(future, HANG_GUARD)
        return handle if handle.accepted else None

    def result(self, handle) -> TryOn.Result:
        """Wait for a goal's result."""
        return self.spinner.wait(handle.get_result_async(), HANG_GUARD).result


def test_camera_node_through_the_lifecycle(tmp_path):
    domain = free_domain_id()
    camera = Proc(node_argv('camera_node', dict(MANUAL, **{
        'camera.source': str(tmp_path / 'missing.mp4'), 'camera.fps': 10.0})),
        ros_env(domain), tmp_path / 'camera.log')
    lc = Lifecycle(domain)
    try:
        assert lc.state('camera_node') == 'unconfigured'
        lc.wait_for(lambda: lc.states.get('camera_node') == 'unconfigured', 'diagnostics')
        assert lc.node.count_publishers('/image_raw') == 0  # nothing made before configure
        # configure fails: one ERROR line naming the file, the node stays unconfigured
        assert not lc.change('camera_node', 'configure')
        assert lc.state('camera_node') == 'unconfigured' and camera.popen.poll() is None
        errors = [line for line in camera.log().splitlines() if '[ERROR]' in line]
        assert len(errors) == 1 and 'missing.mp4' in errors[0], camera.log()
        # a read-only (reload) setting changes while unconfigured, used at the next configure
        assert lc.set_param('camera_node', 'camera.source', 'sample:astronaut').successful
        assert lc.change('camera_node', 'configure')
        assert lc.state('camera_node') == 'inactive'
        refused = lc.set_param('camera_node', 'camera.source', 'sample:grace_hopper')
        assert not refused.successful and 'read-only' in refused.reason, refused.reason
        assert 'unconfigured' in refused.reason
        assert lc.frames == 0
        assert lc.change('camera_node', 'activate')
        lc.wait_for(lambda: lc.frames >= 3, 'frames while active')
        lc.wait_for(lambda: lc.states.get('camera_node') == 'active', 'diagnostics')
        assert lc.change('camera_node', 'deactivate')
        seen = lc.frames
        lc.states.clear()  # five diagnostics periods (0.2 s) later no new frame has come
        for _ in range(5):
            lc.wait_for(lambda: lc.states.get('camera_node') == 'inactive', 'diagnostics')
            lc.states.clear()
        assert lc.frames <= seen + 1  # at most one already on its way
        assert lc.change('camera_node', 'cleanup')
        assert lc.state('camera_node') == 'unconfigured'
        lc.wait_for(lambda: lc.node.count_publishers('/image_raw') == 0, 'publisher gone')
        assert re.search(r'cleanup: released; RSS \d+ -> \d+ MiB', camera.log())
        assert lc.change('camera_node', 'shutdown')
        assert lc.state('camera_node') == 'finalized'
    finally:
        lc.spinner.close()
        code = camera.stop()
    assert code == 0, camera.log()


def test_server_through_the_lifecycle(tmp_path, tiny_weights):
    domain = free_domain_id()
    params = dict(server_params(tiny_weights), **MANUAL)
    params['catvton.base_model'] = tmp_path / 'no_model'
    server = Proc(node_argv('tryon_server', params), ros_env(domain), tmp_path / 'server.log')
    lc = Lifecycle(domain)
    try:
        assert lc.action.wait_for_server(timeout_sec=HANG_GUARD)
        assert lc.goal(person_goal()) is None  # unconfigured: refused
        assert not lc.change('tryon_server', 'configure')  # missing weights
        errors = [line for line in server.log().splitlines() if '[ERROR]' in line]
        assert len(errors) == 1 and 'no_model' in errors[0], server.log()
        assert lc.state('tryon_server') == 'unconfigured' and server.popen.poll() is None
        base = str(tiny_weights / 'stable-diffusion-inpainting')
        assert lc.set_param('tryon_server', 'catvton.base_model', base).successful
        assert lc.change('tryon_server', 'configure')
        assert lc.goal(person_goal()) is None  # inactive: refused
        assert lc.change('tryon_server', 'activate')
        assert lc.result(lc.goal(person_goal())).error_code == R.SUCCESS
        # deactivate ends a running goal with a code and a result, then refuses new ones
        steps = []
        handle = lc.goal(person_goal(num_inference_steps=1000),
                         lambda msg: steps.append(msg.feedback.step))
        lc.wait_for(lambda: steps, 'feedback of the long goal')
        assert lc.change('tryon_server', 'deactivate')
        result = lc.result(handle)
        assert result.error_code == R.SHUTTING_DOWN and 'deactivated' in result.message
        assert lc.goal(person_goal()) is None
        # cleanup frees the models; configure + activate bring them back
        assert lc.change('tryon_server', 'cleanup')
        rss = re.search(r'cleanup: released; RSS (\d+) -> (\d+) MiB', server.log())
        assert rss and int(rss[2]) < int(rss[1]), server.log()
        assert lc.change('tryon_server', 'configure') and lc.change('tryon_server', 'activate')
        assert lc.result(lc.goal(person_goal())).error_code == R.SUCCESS
        # shutdown from active: the running goal is answered, then finalized
        steps.clear()
        handle = lc.goal(person_goal(num_inference_steps=1000),
                         lambda msg: steps.append(msg.feedback.step))
        lc.wait_for(lambda: steps, 'feedback of the long goal')
        assert lc.change('tryon_server', 'shutdown')
        assert lc.result(handle).error_code == R.SHUTTING_DOWN
        assert lc.state('tryon_server') == 'finalized'
    finally:
        lc.spinner.close()
        code = server.stop()
    assert code == 0, server.log()


def test_bringup_without_autostart_leaves_every_node_unconfigured(tmp_path,
                                                                  tiny_weights):
    domain = free_domain_id()
    params = tmp_path / 'params.yaml'
    server = {k: str(v) if isinstance(v, Path) else v
              for k, v in server_params(tiny_weights).items()}
    params.write_text(param_files.dump_yaml({'tryon_server': server}))
    bringup = Proc([LIB / 'tryon_bringup', '--params-file', params, '--no-autostart',
                    '--camera-source', 'sample:astronaut', '--device', 'cpu',
                    '--set', 'camera.width=160', '--set', 'camera.height=120',
                    '--log-dir', tmp_path / 'logs'], ros_env(domain), tmp_path / 'bringup.log')
    lc = Lifecycle(domain)
    nodes = ('camera_node', 'segmentation_node', 'tryon_server')
    try:
        assert [lc.state(n) for n in nodes] == ['unconfigured'] * 3
        for node in nodes:
            assert lc.change(node, 'configure') and lc.change(node, 'activate'), node
        lc.wait_for(lambda: lc.frames > 0, 'frames')

        def paired():  # the server needs a frame+mask pair: the first goals may wait for one
            result = lc.result(lc.goal(TryOn.Goal(garment_image=person_goal().garment_image,
                                                  cloth_type='upper')))
            return result if result.error_code != R.NO_PERSON_FRAME else None

        result = wait_until(paired, what='a goal that found a camera pair', interval=0)
        assert result.error_code == R.SUCCESS, result.message
    finally:
        lc.spinner.close()
        code = bringup.stop()
    assert code == 0, bringup.log()
