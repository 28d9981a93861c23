"""
tryon_server as a production node, in real processes over loopback DDS with tiny weights.

Admission, cancel, time limits, stale inputs, privacy, latched topics, small feedback and
shutdown.
"""

import json
import os
from pathlib import Path
import random
import signal
import stat
import subprocess
import time

from diagnostic_msgs.msg import DiagnosticStatus
import numpy as np
import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from rosutil import free_domain_id, HANG_GUARD, Proc, ROOT, ros_env, script_argv, wait_until
from sensor_msgs.msg import Image
from stack import person_goal, System, wait_for_paired_mask
from vton_interfaces.action import TryOn
from vton_ros.nodes import image_conv

pytestmark = pytest.mark.stack  # node processes: not in make check

R = TryOn.Result
ABORTED, CANCELED, SUCCEEDED = 6, 5, 4  # action_msgs GoalStatus
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


@pytest.fixture(scope='module')
def stack(tmp_path_factory, tiny_weights):  # noqa: F811
    tmp = tmp_path_factory.mktemp('robust')
    sys_ = System(tmp, tiny_weights, server={'tryon.save_dir': tmp / 'saved' / 'private',
                                             'tryon.pair_max_age': 5.0})
    yield sys_
    if sys_.client.context.ok():
        sys_.close()


def policy(stack, name: str, queue_size: int = 4) -> None:
    assert stack.set_param('tryon.busy_policy', name).successful
    assert stack.set_param('tryon.queue_size', queue_size).successful


def cancel(stack, started) -> bool:
    """Cancel a goal; return whether the server accepted the cancel."""
    return bool(stack.client.wait(started[0].cancel_goal_async(), HANG_GUARD).goals_canceling)


def still_running(stack, outcome) -> None:
    stack.wait_feedback(outcome, len(outcome.feedback) + 1, timeout=HANG_GUARD)


@pytest.mark.parametrize('busy_policy', ['preempt', 'queue', 'reject'])
def test_invalid_goal_gets_its_code_and_never_touches_the_running_goal(stack, busy_policy):
    policy(stack, busy_policy, queue_size=1)
    try:
        running = stack.start(person_goal(num_inference_steps=1000))
        stack.wait_feedback(running[1], timeout=HANG_GUARD)
        if busy_policy == 'queue':  # the queue is full: the invalid goal still gets its code
            queued = stack.start(person_goal(num_inference_steps=2))
            assert queued[1].accepted
        for fields, code in (({'cloth_type': 'hat'}, R.INVALID_ARGUMENT),
                             ({'mask': image_conv.from_mono(np.zeros((5, 5), np.uint8))},
                              R.INVALID_IMAGE)):
            bad = stack.send(person_goal(**fields), HANG_GUARD)
            assert bad.accepted and bad.status == ABORTED and not bad.feedback
            assert bad.result.error_code == code, bad.result.message
            still_running(stack, running[1])
        assert cancel(stack, running)
        first = stack.wait(running, HANG_GUARD)
        assert first.result.error_code == R.CANCELED and first.status == CANCELED
        if busy_policy == 'queue':
            assert stack.wait(queued, HANG_GUARD).result.error_code == R.SUCCESS
    finally:
        policy(stack, 'reject')


def test_an_accepted_cancel_always_ends_canceled(stack):
    """Cancels at random points, most near the end of a 2-step goal, where the race was."""
    rng = random.Random(9)
    accepted = 0
    for i in range(16):
        started = stack.start(person_goal(num_inference_steps=2))
        if i % 4:
            stack.wait_feedback(started[1], timeout=HANG_GUARD)
            time.sleep(rng.uniform(0.0, 0.05))  # spread the cancel over the goal's last step
        ok = cancel(stack, started)
        out = stack.wait(started, HANG_GUARD)
        if ok:
            accepted += 1
            assert (out.status, out.result.error_code) == (CANCELED, R.CANCELED), \
                out.result.message
        else:  # refused: the goal had already ended
            assert (out.status, out.result.error_code) == (SUCCEEDED, R.SUCCESS)
    assert accepted


def test_goal_timeout_aborts_with_timed_out_and_frees_the_server(stack):
    assert stack.set_param('tryon.goal_timeout', 0.5).successful
    try:
        out = stack.send(person_goal(num_inference_steps=1000), HANG_GUARD)
    finally:
        assert stack.set_param('tryon.goal_timeout', 0.0).successful
    assert (out.status, out.result.error_code) == (ABORTED, R.TIMED_OUT), out.result.message
    assert 'tryon.goal_timeout' in out.result.message and '0.5 s' in out.result.message
    assert out.feedback[-1].step < 1000
    assert stack.send(person_goal(), HANG_GUARD).result.error_code == R.SUCCESS


def feedback_bytes(preview_hw: tuple) -> int:
    """Return the serialized size of a feedback with a latent-sized preview."""
    preview = image_conv.from_rgb(np.zeros((*preview_hw, 3), np.uint8))
    fb = TryOn.Feedback(step=10, total_steps=20, elapsed_sec=1.0, eta_sec=1.0,
                        preview=preview)
    return len(serialize_message(fb))


def test_feedback_stays_small_and_previews_go_on_their_topic(stack):
    previews = []
    stack.client.node.create_subscription(Image, 'tryon/preview', previews.append, 10)
    started = stack.start(person_goal(num_inference_steps=4))
    out = stack.wait(started, HANG_GUARD)
    assert out.result.error_code == R.SUCCESS
    sizes = [len(serialize_message(f)) for f in out.feedback]
    with_preview = [f for f in out.feedback if f.preview.width]
    assert with_preview, 'no feedback carried a preview (tryon.preview_every 2)'
    latent = (64 // 8) * (48 // 8) * 3  # catvton 64x48 in these tests
    full = len(serialize_message(out.result.image))
    print(f'feedback bytes at 64x48: {sizes}; result image {full} bytes; at 512x384: '
          f'{feedback_bytes((64, 48))} bytes')
    assert max(sizes) <= 512 + latent < full  # a latent preview, never an image
    assert feedback_bytes((64, 48)) < 16 * 1024  # the 512x384 preview: 9.2 KB of pixels
    wait_until(lambda: previews, what='a message on tryon/preview')
    assert previews[-1].width * previews[-1].height * 3 <= latent
    goal_id = bytes(started[0].goal_id.uuid).hex()[:8]
    stack.server.wait_for_log(f'goal {goal_id} ended SUCCESS in', timeout=HANG_GUARD)
    line = next(x for x in stack.server.log().splitlines() if f'goal {goal_id}' in x)
    assert '[INFO]' in line and 'garment image, upper, 4 steps' in line, line


def test_saved_results_are_private_and_never_overwritten(stack):
    folder = stack.tmp / 'saved' / 'private'
    before = set(folder.glob('*')) if folder.exists() else set()
    policy(stack, 'queue', queue_size=8)
    try:  # the same seed and second: the old names (time + seed) collided
        started = [stack.start(person_goal(num_inference_steps=2, seed=1)) for _ in range(8)]
        outs = [stack.wait(s, HANG_GUARD) for s in started]
    finally:
        policy(stack, 'reject')
    assert [o.result.error_code for o in outs] == [R.SUCCESS] * 8
    new = set(folder.glob('*')) - before
    stems = {p.name[:-4] for p in new if p.suffix == '.png' and not p.stem.endswith('_mask')}
    assert len(stems) == 8 and len(new) == 24
    for stem in stems:
        assert json.loads((folder / f'{stem}.json').read_text())['seed'] == 1
        assert (folder / f'{stem}_mask.png').exists()
    assert {stat.S_IMODE(p.stat().st_mode) for p in new} == {0o600}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def wait_message(stack, topic: str, timeout: float = HANG_GUARD) -> Image:
    """Subscribe now (transient_local) and return the first message: a latched one."""
    got = []
    sub = stack.client.node.create_subscription(Image, topic, got.append, LATCHED)
    try:
        wait_until(lambda: got, timeout, f'a message on {topic} for a late subscriber')
    finally:
        stack.client.node.destroy_subscription(sub)
    return got[0]


def test_late_viewer_gets_the_last_result(stack):
    out = stack.send(person_goal(), HANG_GUARD)
    assert out.result.error_code == R.SUCCESS
    latched = wait_message(stack, 'tryon/result')
    assert bytes(latched.data) == bytes(out.result.image.data)


@pytest.fixture()
def own_stack(tmp_path, tiny_weights):
    """Yield a stack of its own, for a test that kills one of its nodes."""
    sys_ = System(tmp_path, tiny_weights, server={'tryon.pair_max_age': 5.0})
    yield sys_
    sys_.close()


def test_dead_camera_makes_diagnostics_error_and_goals_no_person_frame(own_stack):
    stack = own_stack
    wait_for_paired_mask(stack, timeout=HANG_GUARD)
    camera_goal = person_goal(person_image=Image(), mask=Image())
    assert stack.send(camera_goal, HANG_GUARD).result.error_code == R.SUCCESS
    os.killpg(stack.camera.pid, signal.SIGKILL)  # the camera dies without a word

    def server_error():
        with stack._lock:
            status = next((s for s in reversed(stack.diagnostics)
                           if 'tryon_server' in s.name), None)
        return status if status is not None and status.level == DiagnosticStatus.ERROR else None

    status = wait_until(server_error, what='an ERROR diagnostic of tryon_server', interval=0.2)
    values = {kv.key: kv.value for kv in status.values}
    assert float(values['pair_age_s']) > 5.0 and 's old' in status.message
    out = stack.send(camera_goal, HANG_GUARD)
    assert out.result.error_code == R.NO_PERSON_FRAME and 's old' in out.result.message
    assert wait_message(stack, 'mask_overlay').encoding == 'rgb8'  # latched overlay


@pytest.fixture()
def own_server(tmp_path, tiny_weights):
    """Yield a tryon_server of its own (no camera: goals bring images), for a test that ends it."""
    sys_ = System(tmp_path, tiny_weights, camera=False)
    yield sys_
    sys_.close()


def test_shutdown_ends_running_and_queued_goals_first(own_server):
    stack = own_server
    policy(stack, 'queue')
    running = stack.start(person_goal(num_inference_steps=1000))
    stack.wait_feedback(running[1], timeout=HANG_GUARD)
    queued = stack.start(person_goal(num_inference_steps=2))
    assert queued[1].accepted
    start = time.monotonic()
    stack.server.popen.send_signal(signal.SIGTERM)
    outs = [stack.wait(running, HANG_GUARD), stack.wait(queued, HANG_GUARD)]
    code = stack.server.popen.wait(HANG_GUARD)
    print(f'shutdown: results and exit in {time.monotonic() - start:.2f} s')
    for out in outs:
        assert (out.status, out.result.error_code) == (ABORTED, R.SHUTTING_DOWN), \
            out.result.message
        assert 'shutting down' in out.result.message
    log = stack.server.log()
    assert code == 0 and 'Traceback' not in log, log[-3000:]
    assert log.count('ended SHUTTING_DOWN') == 2


def shm_files(pid: int) -> set:
    """Fast DDS shared-memory files a process has mapped or open."""
    maps = Path(f'/proc/{pid}/maps').read_text()
    return {line.split()[-1] for line in maps.splitlines() if '/dev/shm/fast' in line}


@pytest.mark.parametrize('profile,uses_shm', [('fastdds_loopback_udp.xml', False),
                                              ('fastdds_loopback.xml', True)])
def test_udp_profile_talks_without_shared_memory(tmp_path, profile, uses_shm):
    env = ros_env(free_domain_id(),
                  FASTDDS_DEFAULT_PROFILES_FILE=str(ROOT / 'config' / profile))
    procs = ROOT / 'test' / 'processes'
    server = Proc(script_argv(procs / 'echo_tryon_server.py'), env, tmp_path / 'server.log')
    try:
        server.wait_for_log('echo server ready', timeout=HANG_GUARD)
        client = subprocess.run(script_argv(procs / 'tryon_goal_client.py'), env=env,
                                capture_output=True, text=True, timeout=HANG_GUARD, cwd=ROOT)
        seen = shm_files(server.pid)  # after a goal with MB-sized images went through
    finally:
        assert server.stop() == 0, server.log()
    assert client.returncode == 0, client.stdout + client.stderr
    summary = json.loads(client.stdout.strip().splitlines()[-1])
    assert summary['error_code'] == 0 and summary['sha'] == summary['expected_sha']
    assert bool(seen) == uses_shm, seen
