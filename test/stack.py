"""
Harness of the multi-process ROS tests: the three nodes as processes and a test client.

:class:`System` starts camera_node, segmentation_node and tryon_server from their installed
executables with tiny random weights (the ``tiny_weights`` fixture of conftest.py); the test
process is the action client (a real rclpy node) over loopback DDS.
"""

from dataclasses import dataclass, field
from pathlib import Path
import threading

import cv2
from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from rosutil import ActionClient, free_domain_id, HANG_GUARD, node_argv, Proc, ros_env, Spinner, \
    wait_until
from sensor_msgs.msg import Image
from vton_interfaces.action import TryOn
from vton_ros.media import samples
from vton_ros.nodes import image_conv

R = TryOn.Result
CAMERA_SIZE = (160, 120)  # width, height of image_raw
STAGES = ['preprocess', 'segmentation', 'vae_encode', 'denoise', 'vae_decode',
          'safety_check', 'total']
SERVER_PARAMS = {
    'catvton.device': 'cpu', 'catvton.precision': 'fp32', 'catvton.height': 64,
    'catvton.width': 48, 'catvton.num_inference_steps': 4, 'catvton.seed': 5,
    'tryon.preview_every': 2, 'tryon.pair_max_age': 30.0, 'segmentation.device': 'cpu',
}


@dataclass
class Outcome:
    """What the client saw of one goal."""

    accepted: bool
    result: TryOn.Result | None = None
    status: int = 0
    feedback: list = field(default_factory=list)


class System:
    """The three node processes and a test-side client."""

    def __init__(self, tmp: Path, weights: Path, server: dict | None = None,
                 camera: bool = True, nodes: dict[str, dict] | None = None) -> None:
        """
        Start the nodes (``camera=False``: tryon_server alone, for goals with images).

        nodes: more parameters of camera_node and segmentation_node by node name.
        """
        nodes = nodes or {}
        self.tmp = tmp
        self.domain = free_domain_id()
        self.env = ros_env(self.domain)
        catalog = tmp / 'garments'
        catalog.mkdir()
        for name, kind, color in (('red_tshirt', 'tshirt', (200, 30, 40)),
                                  ('blue_skirt', 'skirt', (30, 40, 200))):
            rgb = samples.garment(kind, color, 128, 96)
            cv2.imwrite(str(catalog / f'{name}.png'), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        (catalog / 'catalog.yaml').write_text('red_tshirt: upper\nblue_skirt: lower\n')
        self.server_cwd = tmp / 'server_cwd'
        self.server_cwd.mkdir()
        params = dict(server_params(weights), **{'garments.catalog_dir': catalog},
                      **(server or {}))
        self.procs = []
        if camera:  # 2 Hz: an idle stack costs its worker a tenth of a core, not a quarter
            self.camera = Proc(node_argv('camera_node', {
                'camera.source': 'sample:astronaut', 'camera.fps': 2.0,
                'camera.width': CAMERA_SIZE[0], 'camera.height': CAMERA_SIZE[1],
                **nodes.get('camera_node', {})}),
                self.env, tmp / 'camera.log')
            self.segmentation = Proc(node_argv('segmentation_node', {
                'segmentation.max_rate': 2.0, 'segmentation.device': 'cpu',
                **nodes.get('segmentation_node', {})}),
                self.env, tmp / 'segmentation.log')
            self.procs += [self.camera, self.segmentation]
        self.server = Proc(node_argv('tryon_server', params), self.env, tmp / 'server.log',
                           cwd=self.server_cwd)
        self.procs.append(self.server)
        try:
            self.server.wait_for_log('model loaded', timeout=HANG_GUARD)
        except AssertionError:
            for proc in self.procs:  # a stack that cannot start leaves nothing running
                proc.stop()
            raise
        self.client = Spinner('test_tryon_client', self.domain)
        node = self.client.node
        self.action = ActionClient(node, TryOn, 'tryon')
        assert self.action.wait_for_server(timeout_sec=HANG_GUARD)
        self.params = node.create_client(SetParameters, '/tryon_server/set_parameters')
        self._lock = threading.Lock()
        self.frames: dict = {}
        self.masks: list = []
        self.overlays: list = []
        self.diagnostics: list = []
        node.create_subscription(Image, 'image_raw', self._on_frame, qos_profile_sensor_data)
        node.create_subscription(Image, 'agnostic_mask', self._on_mask, qos_profile_sensor_data)
        node.create_subscription(Image, 'mask_overlay', self._on_overlay,
                                 qos_profile_sensor_data)
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 50)

    def _on_frame(self, msg):
        with self._lock:
            self.frames[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg

    def _on_mask(self, msg):
        with self._lock:
            self.masks.append(msg)

    def _on_overlay(self, msg):
        with self._lock:
            self.overlays.append(msg)

    def _on_diag(self, msg):
        with self._lock:
            self.diagnostics.extend(msg.status)

    def frame(self, header) -> np.ndarray | None:
        """Return the camera frame the client received with this stamp."""
        with self._lock:
            msg = self.frames.get((header.stamp.sec, header.stamp.nanosec))
        return None if msg is None else image_conv.to_rgb(msg)

    def set_param(self, name: str, value):
        """Set a tryon_server parameter; return the SetParametersResult."""
        request = SetParameters.Request(parameters=[Parameter(name, value=value)
                                                    .to_parameter_msg()])
        return self.client.call(self.params, request, 'set_parameters').results[0]

    def send(self, goal: TryOn.Goal, timeout: float = HANG_GUARD) -> Outcome:
        """Send a goal and wait for its result."""
        return self.wait(self.start(goal), timeout)

    def start(self, goal: TryOn.Goal):
        """Send a goal; return (goal handle or None, outcome being filled)."""
        outcome = Outcome(accepted=False)
        future = self.action.send_goal_async(
            goal, feedback_callback=lambda m: outcome.feedback.append(m.feedback))
        handle = self.client.wait(future, HANG_GUARD)
        outcome.accepted = handle.accepted
        return (handle if handle.accepted else None), outcome

    def wait(self, started, timeout: float = HANG_GUARD) -> Outcome:
        """Wait for the result of a goal sent with :meth:`start`."""
        handle, outcome = started
        if handle is not None:
            response = self.client.wait(handle.get_result_async(), timeout)
            outcome.result, outcome.status = response.result, response.status
        return outcome

    def wait_feedback(self, outcome: Outcome, count: int = 1,
                      timeout: float = HANG_GUARD) -> None:
        """Wait until a goal has had ``count`` feedback messages."""
        wait_until(lambda: len(outcome.feedback) >= count, timeout, f'{count} feedback',
                   interval=0.01)

    def close(self) -> list:
        """Stop the client and the processes; return their exit codes."""
        self.client.close()
        return [p.stop() for p in self.procs]


def server_params(weights: Path) -> dict:
    """Return tryon_server parameters for the tiny random weights in ``weights``."""
    return dict(SERVER_PARAMS, **{
        'catvton.base_model': weights / 'stable-diffusion-inpainting',
        'catvton.vae': weights / 'sd-vae-ft-mse', 'catvton.attn_ckpt': weights / 'CatVTON'})


def person_goal(seed: int = 7, **kwargs) -> TryOn.Goal:
    """Build a goal with its own person image (astronaut 120x96) and garment image."""
    person = np.ascontiguousarray(samples.portrait('astronaut')[::4, 16:-16:4][:120, :96])
    mask = np.zeros(person.shape[:2], np.uint8)
    mask[60:115, 15:80] = 255
    goal = TryOn.Goal(person_image=image_conv.from_rgb(person),
                      mask=image_conv.from_mono(mask),
                      garment_image=image_conv.from_rgb(samples.garment('tshirt', height=96,
                                                                        width=72)),
                      cloth_type='upper', seed=seed, guidance_scale=-1.0)
    for key, value in kwargs.items():
        setattr(goal, key, value)
    return goal


def wait_for_paired_mask(system, timeout: float = HANG_GUARD) -> list:
    """Wait until the client has a mask whose stamp matches a frame it received."""
    def matched():
        with system._lock:
            masks = [m for m in system.masks
                     if (m.header.stamp.sec, m.header.stamp.nanosec) in system.frames]
        return masks if masks and system.overlays else None

    return wait_until(matched, timeout, 'an agnostic_mask with the stamp of a received '
                      'image_raw frame', interval=0.1)
