"""
The whole ROS system over loopback DDS with tiny random CatVTON weights.

camera_node, segmentation_node and tryon_server run as separate processes started from
their installed executables; this test process is the action client (a real rclpy node).
"""

import math
from pathlib import Path
import re
import resource
import subprocess
import time

import cv2
import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from rosutil import ActionClient, free_domain_id, HANG_GUARD, LIB, node_argv, Proc, \
    process_udp_addresses, ros_env, Spinner, wait_until
from sensor_msgs.msg import CompressedImage, Image
from stack import (CAMERA_SIZE, person_goal, R, SERVER_PARAMS, server_params, STAGES, System,
                   wait_for_paired_mask)
from vton_interfaces.action import TryOn
from vton_ros.media import image_codec
from vton_ros.media import samples
from vton_ros.nodes import image_conv
from vton_ros.nodes.common import LATCHED_QOS as LATCHED
from vton_ros.pipeline import preprocess

pytestmark = pytest.mark.stack  # node processes: not in make check


@pytest.fixture(scope='module')
def system(tmp_path_factory, tiny_weights):
    sys_ = System(tmp_path_factory.mktemp('system'), tiny_weights)
    yield sys_
    codes = sys_.close()  # after every test of the module, in whatever order they ran
    assert codes == [0, 0, 0], [p.log()[-2000:] for p in sys_.procs]


def test_goal_from_live_camera_frame(system):
    wait_for_paired_mask(system)
    out = system.send(TryOn.Goal(garment_id='red_tshirt'))  # defaults: node's seed, guidance
    r = out.result
    assert r.error_code == R.SUCCESS, r.message
    assert 'RANDOM' in r.message  # tiny test weights are announced as random
    assert (r.image.width, r.image.height) == CAMERA_SIZE
    assert r.image.header.frame_id == 'camera'
    assert [t.name for t in r.timings] == STAGES + ['camera_wait']  # camera_wait: not work
    assert all(t.seconds >= 0 for t in r.timings) and r.timings[-2].seconds > 0
    assert [f.step for f in out.feedback] == [1, 2, 3, 4]
    assert all(f.total_steps == 4 for f in out.feedback)
    previews = [f.step for f in out.feedback if f.preview.width > 0]
    assert previews == [2, 4]
    assert r.seed == SERVER_PARAMS['catvton.seed']  # goal seed <0 -> catvton.seed
    mask = image_conv.to_mono(r.mask)
    assert mask.shape == (CAMERA_SIZE[1], CAMERA_SIZE[0]) and (mask == 255).any()
    # catvton.framing person (the default): the model saw the person's box and its result
    # went back into the mask of the camera frame it came from. Outside the mask the result
    # is that frame, pixel for pixel; the whole mask is repainted, also where it reaches past
    # the centre crop of the paper's framing (no seam).
    frame = system.frame(r.image.header)
    assert frame is not None, 'the client never received the frame the server used'
    image = image_conv.to_rgb(r.image)
    inside = mask >= 128
    assert np.array_equal(image[~inside], frame[~inside])
    changed = (image != frame).any(axis=2)
    assert changed[inside].mean() > 0.95
    box = preprocess.centre_crop_box(CAMERA_SIZE[1], CAMERA_SIZE[0], 64, 48)
    past = inside.copy()
    past[:, box.left:box.left + box.width] = False
    assert past.sum() > 100 and changed[past].mean() > 0.95


def test_masks_carry_the_frame_header(system):
    matched = wait_for_paired_mask(system)
    mask = matched[-1]
    assert mask.encoding == 'mono8' and mask.header.frame_id == 'camera'
    assert (mask.width, mask.height) == CAMERA_SIZE
    assert (image_conv.to_mono(mask) == 255).mean() > 0.05  # the astronaut is masked
    assert system.overlays[-1].encoding == 'rgb8'


def test_segmentation_survives_bad_frames(system):
    pub = system.client.node.create_publisher(Image, 'image_raw', qos_profile_sensor_data)
    bad = _bad_image(encoding='yuv422_weird')
    bad.header.frame_id = 'bad'
    with system._lock:
        count = len(system.masks)
    for _ in range(100):  # the worker keeps only the newest frame: outnumber the camera
        pub.publish(bad)
        time.sleep(0.02)

    def recovered():
        with system._lock:
            errors = [kv.value for st in system.diagnostics if 'segmentation_node' in st.name
                      for kv in st.values if kv.key == 'last_error']
            new_masks = system.masks[count:]
        if errors and any(m.header.frame_id == 'camera' for m in new_masks):
            return errors, new_masks
        return None

    errors, new_masks = wait_until(recovered, interval=0.2,
                                   what='a last_error of segmentation_node, then a camera mask')
    assert system.segmentation.popen.poll() is None
    assert any('encoding' in e for e in errors), errors
    assert any(m.header.frame_id == 'camera' for m in new_masks)
    assert not any(m.header.frame_id == 'bad' for m in new_masks)
    system.client.node.destroy_publisher(pub)


def test_same_seed_same_image(system):
    first = system.send(person_goal(seed=11)).result
    second = system.send(person_goal(seed=11)).result
    other = system.send(person_goal(seed=12)).result
    assert first.error_code == second.error_code == other.error_code == R.SUCCESS
    assert (first.image.width, first.image.height) == (96, 120)
    assert bytes(first.image.data) == bytes(second.image.data)
    assert bytes(first.image.data) != bytes(other.image.data)


def _bad_image(**fields) -> Image:
    msg = image_conv.from_rgb(np.zeros((40, 40, 3), np.uint8))
    for key, value in fields.items():
        setattr(msg, key, value)
    return msg


BAD_GOALS = {
    'unknown encoding': ({'person_image': _bad_image(encoding='yuv422_weird')},
                         R.INVALID_IMAGE, 'encoding'),
    'short data': ({'person_image': _bad_image(height=64)}, R.INVALID_IMAGE, 'bytes'),
    'zero size': ({'person_image': _bad_image(width=0, height=0)}, R.INVALID_IMAGE,
                  'too small'),
    'huge': ({'garment_image': _bad_image(width=100000, height=100000, step=300000)},
             R.INVALID_IMAGE, 'too large'),
    'mask size': ({'mask': image_conv.from_mono(np.zeros((5, 5), np.uint8))},
                  R.INVALID_IMAGE, 'mask'),
    'cloth type': ({'cloth_type': 'hat'}, R.INVALID_ARGUMENT, 'cloth_type'),
    'garment id': ({'garment_image': Image(), 'garment_id': 'no_such_garment'},
                   R.UNKNOWN_GARMENT, 'no_such_garment'),
    'no garment': ({'garment_image': Image()}, R.INVALID_ARGUMENT, 'garment'),
    'no person in photo': ({'person_image': image_conv.from_rgb(samples.garment('skirt')),
                            'mask': Image()}, R.NO_PERSON_DETECTED, 'no upper garment region'),
    'steps': ({'num_inference_steps': 5000}, R.INVALID_ARGUMENT, 'num_inference_steps'),
    'negative steps': ({'num_inference_steps': -3}, R.INVALID_ARGUMENT,
                       'num_inference_steps'),
    'guidance nan': ({'guidance_scale': math.nan}, R.INVALID_ARGUMENT, 'guidance_scale'),
    'guidance huge': ({'guidance_scale': 1e6}, R.INVALID_ARGUMENT, 'guidance_scale'),
}


@pytest.mark.parametrize('case', list(BAD_GOALS))
def test_bad_goal_is_aborted_and_the_server_keeps_serving(system, case):
    fields, code, words = BAD_GOALS[case]
    out = system.send(person_goal(**fields))
    assert out.accepted
    assert out.result.error_code == code, out.result.message
    assert words in out.result.message
    assert out.status == 6  # GoalStatus.STATUS_ABORTED
    assert system.server.popen.poll() is None
    assert system.send(person_goal()).result.error_code == R.SUCCESS


def test_cancel_stops_within_a_step(system):
    started = system.start(person_goal(num_inference_steps=1000))
    handle, outcome = started
    system.wait_feedback(outcome, 3)
    system.client.wait(handle.cancel_goal_async(), HANG_GUARD)
    steps_at_cancel = len(outcome.feedback)
    out = system.wait(started)
    assert out.result.error_code == R.CANCELED, out.result.message
    assert out.status == 5  # GoalStatus.STATUS_CANCELED
    assert out.feedback[-1].step < 1000
    assert len(out.feedback) - steps_at_cancel <= 3  # stops within a step (+ in flight)
    assert system.send(person_goal()).result.error_code == R.SUCCESS


def test_busy_policy_reject(system):
    assert system.set_param('tryon.busy_policy', 'reject').successful
    long = system.start(person_goal(num_inference_steps=1000))
    system.wait_feedback(long[1])
    second = system.start(person_goal())
    assert second[0] is None and not second[1].accepted
    system.client.wait(long[0].cancel_goal_async(), HANG_GUARD)
    assert system.wait(long).result.error_code == R.CANCELED


def test_busy_policy_queue(system):
    assert system.set_param('tryon.busy_policy', 'queue').successful
    try:
        first = system.start(person_goal(num_inference_steps=60))
        system.wait_feedback(first[1])
        second = system.start(person_goal(num_inference_steps=3))
        assert second[1].accepted
        a, b = system.wait(first), system.wait(second)
    finally:
        system.set_param('tryon.busy_policy', 'reject')
    assert a.result.error_code == b.result.error_code == R.SUCCESS
    # Both ran to the end, one after the other (feedback is keep-last: a fast burst may
    # skip a message, so compare the last step, not the count).
    assert (a.feedback[-1].step, a.feedback[-1].total_steps) == (60, 60)
    assert (b.feedback[-1].step, b.feedback[-1].total_steps) == (3, 3)


def test_canceling_a_queued_goal_does_not_wait_for_the_running_one(system):
    assert system.set_param('tryon.busy_policy', 'queue').successful
    try:
        first = system.start(person_goal(num_inference_steps=1000))
        system.wait_feedback(first[1])
        queued = system.start(person_goal(num_inference_steps=3))
        assert queued[1].accepted
        system.client.wait(queued[0].cancel_goal_async(), HANG_GUARD)
        out = system.wait(queued)
        running = first[1].feedback[-1].step
        system.client.wait(first[0].cancel_goal_async(), HANG_GUARD)
        system.wait(first)
    finally:
        system.set_param('tryon.busy_policy', 'reject')
    assert out.result.error_code == R.CANCELED and not out.feedback
    assert running < 1000  # the first goal was still running when the queued one ended


def test_busy_policy_preempt(system):
    assert system.set_param('tryon.busy_policy', 'preempt').successful
    try:
        first = system.start(person_goal(num_inference_steps=1000))
        system.wait_feedback(first[1])
        second = system.start(person_goal(num_inference_steps=3))
        a, b = system.wait(first), system.wait(second)
    finally:
        system.set_param('tryon.busy_policy', 'reject')
    assert a.result.error_code == R.PREEMPTED, a.result.message
    assert a.feedback[-1].step < 1000
    assert b.result.error_code == R.SUCCESS, b.result.message


@pytest.mark.parametrize('name,value,pattern', [
    ('catvton.height', 100, r'multiple of 8|step: 8'),
    ('catvton.num_inference_steps', 0, r'minimum|range|min: 1'),
    ('catvton.guidance_scale', 80.0, r'maximum|range|max: 50'),
    ('tryon.busy_policy', 'sometimes', r'one of: reject, queue, preempt'),
    ('catvton.scheduler', 'plms', r'one of: ddim'),
    ('catvton.device', 'cuda', r'read-only|read only'),
])
def test_invalid_parameter_is_rejected_with_a_reason(system, name, value, pattern):
    result = system.set_param(name, value)
    assert not result.successful
    assert re.search(pattern, result.reason, re.IGNORECASE), result.reason


def test_valid_parameter_change_applies(system):
    assert system.set_param('catvton.num_inference_steps', 2).successful
    try:
        out = system.send(person_goal(num_inference_steps=0))
    finally:
        assert system.set_param('catvton.num_inference_steps', 4).successful
    assert out.result.error_code == R.SUCCESS
    assert [f.step for f in out.feedback] == [1, 2]


def test_out_of_memory_aborts_goal_and_next_goal_works(system):
    """A real allocation failure: the server's address space is capped, the size raised."""
    pid = system.server.pid
    vm_size = next(int(line.split()[1]) * 1024 for line in
                   Path(f'/proc/{pid}/status').read_text().splitlines()
                   if line.startswith('VmSize:'))
    old = resource.prlimit(pid, resource.RLIMIT_AS)
    assert system.set_param('catvton.height', 4096).successful
    assert system.set_param('catvton.width', 4096).successful
    try:
        resource.prlimit(pid, resource.RLIMIT_AS, (vm_size + 400 * 2 ** 20, old[1]))
        out = system.send(person_goal())
        assert out.result.error_code == R.OUT_OF_MEMORY, out.result.message
        assert 'memory' in out.result.message
    finally:
        system.set_param('catvton.height', 64)
        system.set_param('catvton.width', 48)
        resource.prlimit(pid, resource.RLIMIT_AS, old)
    assert system.send(person_goal()).result.error_code == R.SUCCESS


def test_diagnostics_from_every_node(system):

    def every_node():
        with system._lock:
            by_name = {s.name: {kv.key: kv.value for kv in s.values}
                       for s in system.diagnostics}
        names = ' '.join(by_name)
        return by_name if all(n in names for n in ('camera_node', 'segmentation_node',
                                                   'tryon_server')) else None

    by_name = wait_until(every_node, what='diagnostics of every node', interval=0.2)
    server = next(v for k, v in by_name.items() if 'tryon_server' in k)
    camera = next(v for k, v in by_name.items() if 'camera_node' in k)
    segmentation = next(v for k, v in by_name.items() if 'segmentation_node' in k)
    assert 'model' in server and server['random_weights'] == 'True'
    assert float(camera['rate_hz']) > 0
    assert 'latency_s' in segmentation and segmentation['backend'] == 'pose'


def test_images_written_only_with_save_dir(system):
    """No file without tryon.save_dir; no peer can set it (saving: test_server_robustness)."""
    assert not any(system.server_cwd.rglob('*')), 'server wrote files without tryon.save_dir'
    result = system.set_param('tryon.save_dir', str(system.tmp / 'saved'))
    assert not result.successful and 'read-only' in result.reason.lower(), result.reason
    assert system.send(person_goal()).result.error_code == R.SUCCESS
    assert not (system.tmp / 'saved').exists() and not any(system.server_cwd.rglob('*'))


def test_tryon_client_cli(system, tmp_path):
    person = tmp_path / 'person.png'
    garment = tmp_path / 'garment.png'
    cv2.imwrite(str(person), cv2.cvtColor(samples.portrait('grace_hopper')[::5, ::5],
                                          cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(garment), cv2.cvtColor(samples.garment('tshirt'), cv2.COLOR_RGB2BGR))
    out = tmp_path / 'result.png'
    run = subprocess.run([LIB / 'tryon_client', '--garment', garment, '--person', person,
                          '--steps', '3', '--seed', '1', '--out', out], env=system.env,
                         capture_output=True, text=True, timeout=HANG_GUARD)
    assert run.returncode == 0, run.stdout + run.stderr
    assert 'denoise' in run.stdout and 'ROS overhead' in run.stdout
    assert 'camera wait' in run.stdout  # apart from the ROS overhead
    result = cv2.imread(str(out))
    panel = cv2.imread(str(tmp_path / 'result_panel.png'))
    assert result.shape[:2] == (120, 103)  # grace_hopper 600x512 every 5th pixel
    assert panel.shape[0] > 384 and panel.shape[1] > 3 * 384 * 103 / 120  # + the caption
    assert (panel[384:] == 255).all(axis=2).mean() > 0.6  # a white band naming the model


def test_tryon_client_garment_errors_name_the_server_catalogue(system, tmp_path):
    cases = (('shirt.png', "file not found: shirt.png (a garment id of the server's catalogue "
                           'has no suffix: --garment shirt)'),  # said before any wait
             ('red_tshirt.png', 'file not found: red_tshirt.png (a garment id of the '
                                "server's catalogue has no suffix: --garment red_tshirt)"),
             ('green_hat', "failed: UNKNOWN_GARMENT: unknown garment id 'green_hat'"))
    for garment, message in cases:
        run = subprocess.run([LIB / 'tryon_client', '--garment', garment], env=system.env,
                             cwd=tmp_path, capture_output=True, text=True, timeout=HANG_GUARD)
        assert run.returncode == 2, run.stdout + run.stderr
        lines = run.stderr.strip().splitlines()  # a file: at once; an id: after the wait line
        assert lines[-1].startswith(f'tryon_client: {message}'), run.stderr
        assert len(lines) == (2 if garment == 'green_hat' else 1), run.stderr


def test_tryon_client_ctrl_c_cancels_the_goal(system, tmp_path):
    garment = tmp_path / 'garment.png'
    cv2.imwrite(str(garment), cv2.cvtColor(samples.garment('dress'), cv2.COLOR_RGB2BGR))
    client = Proc([LIB / 'tryon_client', '--garment', garment, '--steps', '1000',
                   '--out', tmp_path / 'never.png'], system.env, tmp_path / 'client.log')
    client.wait_for_log('/1000', timeout=HANG_GUARD)  # the progress bar is running
    code = client.stop()
    log = client.log_path.read_text()
    assert 'canceling the goal' in log and 'CANCELED' in log, log
    assert code == 0  # canceled as asked
    assert not (tmp_path / 'never.png').exists()
    assert system.send(person_goal()).result.error_code == R.SUCCESS


def test_every_node_is_loopback_only(system):
    for proc in system.procs:
        addresses = process_udp_addresses(proc.pid)
        assert addresses and addresses <= {'127.0.0.1'}, (proc.argv[0], addresses)


def _diag_values(system, node: str) -> dict:
    """Return the key/values of the newest /diagnostics status of ``node``."""
    with system._lock:
        statuses = [st for st in system.diagnostics if st.name.endswith(node)]
    return {kv.key: kv.value for kv in statuses[-1].values} if statuses else {}


def _collect(system, kind, topic: str, qos) -> tuple:
    """Subscribe on the client node; return (subscription, list that fills with messages)."""
    got: list = []
    return system.client.node.create_subscription(kind, topic, got.append, qos), got


def test_compressed_images_only_while_watched(system):
    """image_raw/compressed (JPEG) and mask_overlay/compressed (PNG), as image_transport."""
    wait_until(lambda: int(_diag_values(system, 'camera_node').get('frames', 0)) >= 3,
               what='frames')
    assert 'image_raw/compressed sent' not in _diag_values(system, 'camera_node')
    node = system.client.node
    jpeg_sub, jpegs = _collect(system, CompressedImage, 'image_raw/compressed',
                               qos_profile_sensor_data)
    png_sub, pngs = _collect(system, CompressedImage, 'mask_overlay/compressed', LATCHED)
    try:
        def pairs():  # compressed messages whose raw twins the client also has
            with system._lock:
                overlays = {_stamp(m): m for m in system.overlays}
                frames = set(system.frames)
            return ([m for m in jpegs if _stamp(m) in frames],
                    [(m, overlays[_stamp(m)]) for m in pngs if _stamp(m) in overlays])
        wait_until(lambda: all(pairs()), what='compressed frames and overlays')
        with_frame, with_overlay = pairs()
        jpeg, (png, overlay) = with_frame[0], with_overlay[0]
    finally:
        node.destroy_subscription(jpeg_sub)
        node.destroy_subscription(png_sub)
    assert jpeg.format == 'rgb8; jpeg compressed bgr8' and png.format.startswith('rgb8; png')
    encoding, pixels = image_codec.decode(jpeg.format, bytes(jpeg.data))
    raw = system.frame(jpeg.header)
    assert pixels.shape == raw.shape and np.abs(pixels.astype(int) - raw).mean() < 8.0
    assert jpeg.header.frame_id == 'camera' and len(jpeg.data) < raw.nbytes / 3
    _, pixels = image_codec.decode(png.format, bytes(png.data))
    assert np.array_equal(pixels, image_conv.to_rgb(overlay))  # lossless
    wait_until(lambda: int(_diag_values(system, 'camera_node').get('image_raw/compressed sent',
                                                                   0)),
               what='the count of compressed frames on /diagnostics')


def test_compressed_result_is_latched(system):
    """A viewer that subscribes after the goal still gets the result as JPEG."""
    out = system.send(person_goal(seed=11))
    assert out.result.error_code == R.SUCCESS, out.result.message
    sub, got = _collect(system, CompressedImage, 'tryon/result/compressed', LATCHED)
    try:
        wait_until(lambda: got, what='the latched compressed result')
    finally:
        system.client.node.destroy_subscription(sub)
    encoding, pixels = image_codec.decode(got[-1].format, bytes(got[-1].data))
    result = image_conv.to_rgb(out.result.image)
    assert encoding == 'rgb8' and pixels.shape == result.shape
    assert np.abs(pixels.astype(int) - result).mean() < 12.0


def _stamp(msg) -> tuple:
    return msg.header.stamp.sec, msg.header.stamp.nanosec


def test_camera_missing_file_is_a_clear_error(tmp_path):
    env = ros_env(free_domain_id())
    run = subprocess.run(node_argv('camera_node', {'camera.source': '/nonexistent/clip.mp4'}),
                         env=env, capture_output=True, text=True,
                         timeout=HANG_GUARD)
    assert run.returncode == 1
    assert 'does not exist' in run.stdout + run.stderr


def test_bringup_starts_and_stops_every_node(tmp_path):
    env = ros_env(free_domain_id())
    bringup = Proc([LIB / 'tryon_bringup', '--nodes', 'camera_node,segmentation_node',
                    '--set', 'camera.fps=2.0', '--log-dir', tmp_path / 'logs'], env,
                   tmp_path / 'bringup.log')
    bringup.wait_for_log('started segmentation_node', timeout=HANG_GUARD)
    pids = [int(p) for p in re.findall(r'pid (\d+)', bringup.log())]
    logs = tmp_path / 'logs'
    wait_until(lambda: 'open' in _read(logs / 'camera_node.log'), what='camera_node opening',
               interval=0.2)
    assert 'camera source' in _read(logs / 'camera_node.log')
    assert bringup.stop() == 0, bringup.log()
    assert 'all nodes stopped' in bringup.log()
    assert len(pids) == 2 and not any(Path(f'/proc/{pid}').exists() for pid in pids)


def test_bringup_rejects_an_unknown_setting(tmp_path):
    run = subprocess.run([LIB / 'tryon_bringup', '--set', 'catvton.stepz=3'],
                         env=ros_env(free_domain_id()), capture_output=True, text=True,
                         timeout=HANG_GUARD)
    assert run.returncode == 2 and 'unknown setting' in run.stderr


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ''


def test_goal_without_a_camera_frame_is_aborted(tiny_weights, tmp_path):
    env = ros_env(free_domain_id())
    params = dict(server_params(tiny_weights), **{'tryon.pair_wait': 0.5})
    server = Proc(node_argv('tryon_server', params), env, tmp_path / 'server.log')
    client = None
    try:
        server.wait_for_log('model loaded', timeout=HANG_GUARD)
        client = Spinner('lonely_client', int(env['ROS_DOMAIN_ID']))
        action = ActionClient(client.node, TryOn, 'tryon')
        assert action.wait_for_server(timeout_sec=HANG_GUARD)
        handle = client.wait(action.send_goal_async(person_goal(person_image=Image())),
                             HANG_GUARD)
        result = client.wait(handle.get_result_async(), HANG_GUARD).result
        assert result.error_code == R.NO_PERSON_FRAME, result.message
        assert 'camera_node' in result.message
    finally:
        if client is not None:
            client.close()
        assert server.stop() == 0, server.log()
