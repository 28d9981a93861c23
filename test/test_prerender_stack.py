"""
The instant shelf (tryon.prerender) through real ROS processes.

The camera replays one image file that the test rewrites: the astronaut stands in front
of the mirror (every frame the same pixels), or the room is empty (she left).
"""

import os
import re

import cv2
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
import numpy as np
import pytest
from rosutil import HANG_GUARD, wait_until
from stack import R, System
from vton_interfaces.action import TryOn
from vton_ros.media import samples
from vton_ros.nodes import image_conv

pytestmark = pytest.mark.stack  # node processes: not in make check

STEPS = 100  # a background render a goal can land inside (~20 ms a step, once warm)
PRERENDERED = 'prerendered before the tap'
SIZE = (160, 120)


def show(folder, rgb):
    """Put ``rgb`` in front of the camera (atomically: the camera never reads half a file)."""
    tmp = folder / 'next.tmp.png'  # the camera lists the folder once, at its start
    cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION,
                                                                 1])
    os.replace(tmp, folder / 'frame.png')


@pytest.fixture(scope='module')
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp('camera')
    person = cv2.resize(samples.portrait('astronaut')[:384], SIZE, interpolation=cv2.INTER_AREA)
    show(folder, person)
    return folder, person


@pytest.fixture(scope='module')
def system(tmp_path_factory, tiny_weights, scene):
    folder, _ = scene
    with pytest.MonkeyPatch.context() as env:  # the nodes' torch: one thread (no OpenMP
        env.setenv('OMP_NUM_THREADS', '1')  # barrier stalls on this busy, shared CPU)
        sys_ = System(tmp_path_factory.mktemp('prerender'), tiny_weights, server={
            'tryon.prerender': 'shelf', 'tryon.prerender_shelf': 2, 'live.forget_after': 1.0,
            'catvton.num_inference_steps': STEPS},
            nodes={'camera_node': {'camera.source': str(folder), 'camera.mirror': False,
                                   'camera.width': SIZE[0], 'camera.height': SIZE[1]}})
    yield sys_
    codes = sys_.close()
    log = sys_.server.log()
    assert codes == [0, 0, 0], [p.log()[-2000:] for p in sys_.procs]
    assert 'still running' not in log and 'prerender failed' not in log, log[-3000:]


def lines(system, text):
    return system.server.log().count(text)


def denoised(outcome):
    """Whether the goal ran denoising steps itself (feedback may be dropped on the way)."""
    return {t.name: t.seconds for t in outcome.result.timings}['denoise'] > 0


def test_a_ready_garment_is_the_fresh_render_answered_at_once(system, scene):
    folder, person = scene
    system.server.wait_for_log('prerender: red_tshirt ready')
    # the shelf's first two: the skirt cannot be rendered (her legs are out of the picture)
    assert 'prerender: blue_skirt cannot be rendered' in system.server.log()
    ready = system.send(TryOn.Goal(garment_id='red_tshirt'))
    assert ready.result.error_code == R.SUCCESS, ready.result.message
    assert PRERENDERED in ready.result.message
    assert not ready.feedback  # no denoising step ran for this goal
    timings = {t.name: t.seconds for t in ready.result.timings}
    assert not denoised(ready) and timings['prerendered'] > 0.0
    # the page's goal: the camera frame it dressed as the person image
    frame = system.frames[max(system.frames)]  # the newest: the server still keeps it
    page = system.send(TryOn.Goal(garment_id='red_tshirt', person_image=frame))
    assert PRERENDERED in page.result.message, page.result.message
    assert np.array_equal(image_conv.to_rgb(page.result.image),
                          image_conv.to_rgb(ready.result.image))
    # another photo of a person is not a camera frame: rendered, never answered from the shelf
    other = cv2.resize(samples.portrait('grace_hopper')[:384], SIZE,
                       interpolation=cv2.INTER_AREA)
    photo = system.send(TryOn.Goal(garment_id='red_tshirt', cloth_type='upper',
                                   person_image=image_conv.from_rgb(other)))
    assert photo.result.error_code == R.SUCCESS, photo.result.message
    assert PRERENDERED not in photo.result.message and denoised(photo)

    assert system.set_param('tryon.prerender', 'off').successful
    fresh = system.send(TryOn.Goal(garment_id='red_tshirt'))
    assert fresh.result.error_code == R.SUCCESS, fresh.result.message
    assert PRERENDERED not in fresh.result.message and denoised(fresh)
    # same person pixels, same seed, same model: the very image a fresh render makes
    assert np.array_equal(image_conv.to_rgb(fresh.result.image),
                          image_conv.to_rgb(ready.result.image))
    assert np.array_equal(image_conv.to_mono(fresh.result.mask),
                          image_conv.to_mono(ready.result.mask))

    made = lines(system, 'prerender: red_tshirt ready')
    assert system.set_param('tryon.prerender', 'shelf').successful
    system.server.wait_for_log('prerender: red_tshirt ready', count=made + 1)
    try:
        show(folder, np.full_like(person, 128))  # she leaves
        system.server.wait_for_log('prerender: results dropped (the person left)')
    finally:
        show(folder, person)
    system.server.wait_for_log('prerender: red_tshirt ready', count=made + 2)  # she is back


def render_again(system):
    """Drop the ready garments and wait until red_tshirt renders again (in the background)."""
    started = lines(system, 'prerender: rendering red_tshirt')
    dropped = lines(system, 'results dropped (tryon.prerender off)')
    assert system.set_param('tryon.prerender', 'off').successful
    system.server.wait_for_log('results dropped (tryon.prerender off)', count=dropped + 1)
    assert system.set_param('tryon.prerender', 'shelf').successful
    system.server.wait_for_log('prerender: rendering red_tshirt', count=started + 1)


def test_a_client_goal_preempts_the_background_within_one_step(system):
    for attempt in range(5):  # a goal that lands between two renders preempts nothing
        render_again(system)
        before = lines(system, 'preempted at step')
        outcome = system.send(TryOn.Goal(garment_id='red_tshirt', seed=11 + attempt))
        assert outcome.result.error_code == R.SUCCESS, outcome.result.message
        assert PRERENDERED not in outcome.result.message  # another seed: a render of its own
        if lines(system, 'preempted at step') > before:
            break
    else:
        pytest.fail('no goal landed inside a background render in 5 tries')
    found = re.findall(r'preempted at step (\d+), (\d+) step\(s\) after a client goal came',
                       system.server.log())
    step, after = map(int, found[-1])
    assert step < STEPS and after <= 1, found


def test_nothing_runs_while_the_server_is_inactive(system):
    node = system.client.node
    diags = []
    node.create_subscription(DiagnosticArray, '/diagnostics', lambda m: diags.extend(
        s for s in m.status if s.name.endswith('tryon_server')), 50)
    change = node.create_client(ChangeState, '/tryon_server/change_state')
    assert change.wait_for_service(timeout_sec=HANG_GUARD)

    def transition(label):
        request = ChangeState.Request(transition=Transition(label=label))
        assert system.client.wait(change.call_async(request), HANG_GUARD).success, label
    render_again(system)
    transition('deactivate')
    system.server.wait_for_log('prerender worker stopped')
    rendered, shirts = lines(system, 'prerender: rendering'), lines(system, 'rendering red_tshirt')
    seen = len(diags)
    wait_until(lambda: len(diags) >= seen + 3, HANG_GUARD, '3 /diagnostics while inactive')
    values = {kv.key: kv.value for kv in diags[-1].values}
    assert values['prerender'] == 'stopped' and values['lifecycle_state'] == 'inactive'
    assert lines(system, 'prerender: rendering') == rendered  # a person in view, no work
    transition('activate')  # the garments were dropped at deactivate: rendered again
    system.server.wait_for_log('prerender: rendering red_tshirt', count=shirts + 1)
    # the fixture then stops the stack in the middle of a background render: exit code 0
