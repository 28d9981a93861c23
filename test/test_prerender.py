"""The instant shelf's worker (vton_ros.goals.prerender) with a step-by-step renderer."""

from dataclasses import replace
import threading

import numpy as np
import pytest
from rosutil import HANG_GUARD, wait_until
from vton_ros.goals.admission import Admission, GoalError, Request
from vton_ros.goals.prerender import Prerender, Ready, ShelfConfig, Shot
from vton_ros.pipeline.options import TryOnCancelled
from vton_ros.settings import schema
from vton_ros.settings.files import load_yaml
from vton_ros.settings.views import CatVTONCall

H, W = 120, 160
STEPS = 50
CALL = CatVTONCall(num_inference_steps=STEPS, seed=5)


def figure(dx: float = 0.0) -> np.ndarray:
    """(33, 3) landmarks of an upright figure facing the camera, moved dx px to the right."""
    lms = np.zeros((33, 3))
    lms[:, 2] = 0.99
    points = {0: (80, 22), 11: (95, 40), 12: (65, 40), 13: (101, 60), 14: (59, 60),
              15: (104, 79), 16: (56, 79), 23: (90, 80), 24: (70, 80), 25: (90, 100),
              26: (70, 100), 27: (90, 117), 28: (70, 117)}
    for i, (x, y) in points.items():
        lms[i, :2] = (x + dx, y)
    return lms


def frame(dx: int) -> np.ndarray:
    """Return a frame whose first pixel says where the figure stands (the fake pose reads it)."""
    rgb = np.full((H, W, 3), 90, np.uint8)
    rgb[0, 0, 0] = dx
    return rgb


class Host:
    """A camera, a catalogue and a renderer that takes one permit per denoising step."""

    def __init__(self, mode='shelf', shelf=2, gated=False, forget_after=0.0):
        self.admission = Admission()
        self.config = ShelfConfig(mode, shelf, forget_after=forget_after)
        self.shot = None
        self.gate = threading.Semaphore(0) if gated else None
        self.steps = 0  # steps of the current render
        self.renders = []  # (garment, stamp, steps done, how it ended)
        self.landmark_calls = 0
        self.looks = 0
        self.fail = set()

    def see(self, dx, stamp):
        self.shot = Shot(stamp, frame(dx), np.full((H, W), 255, np.uint8))

    def shelf_config(self):
        return self.config

    def idle(self):
        return self.admission.idle()

    def newest(self):
        self.looks += 1
        return self.shot

    def garment_ids(self):
        return ['a', 'b', 'c', 'd']

    def plan(self, garment_id):
        if garment_id in self.fail:
            raise GoalError('INVALID_IMAGE', 'unreadable')
        return Request(np.zeros((8, 8, 3), np.uint8), garment_id, 'upper', None, None, CALL)

    def render(self, request, shot, should_stop):
        self.steps = 0
        for _ in range(STEPS):
            if self.gate is not None:
                assert self.gate.acquire(timeout=HANG_GUARD)
            self.steps += 1
            if should_stop():
                self.renders.append((request.garment_name, shot.stamp, self.steps, 'stopped'))
                raise TryOnCancelled('stopped')
        self.renders.append((request.garment_name, shot.stamp, self.steps, 'done'))
        image = np.full((H, W, 3), ord(request.garment_name), np.uint8)
        return Ready(request.garment_name, request.call, request.cloth_type, image,
                     np.zeros((H, W), np.uint8), 'ok', {'total': 0.01}, shot)

    def landmarks(self, rgb):
        self.landmark_calls += 1
        return None if rgb[0, 0, 1] == 0 else figure(float(rgb[0, 0, 0]))  # 0: pose not seen


@pytest.fixture
def worker():
    made = []

    def make(host):
        prerender = Prerender(host)
        made.append(prerender)
        prerender.start()
        return prerender
    yield make
    for prerender in made:
        assert prerender.stop(HANG_GUARD)
    assert not [t for t in threading.enumerate() if t.name == 'prerender']


def test_the_shelf_is_rendered_for_the_person_in_view(worker):
    host = Host(shelf=2)
    prerender = worker(host)
    host.see(0, stamp=1)
    wait_until(lambda: prerender.ready() == ['a', 'b'], HANG_GUARD, 'garments a and b ready')
    assert [r[:2] for r in host.renders] == [('a', 1), ('b', 1)]  # the first two, one frame
    host.config = replace(host.config, mode='catalogue')
    prerender.wake()
    wait_until(lambda: len(prerender.ready()) == 4, HANG_GUARD, 'the whole catalogue')
    host.config = replace(host.config, mode='off')
    prerender.wake()
    wait_until(lambda: not prerender.ready(), HANG_GUARD, 'results dropped when turned off')
    assert len(host.renders) == 4


def test_nobody_in_view_nothing_rendered_and_a_bad_garment_is_skipped(worker):
    host = Host(shelf=3)
    host.fail = {'a'}
    prerender = worker(host)
    wait_until(lambda: host.looks >= 2, HANG_GUARD, 'two looks at an empty room')
    assert not host.renders and not host.landmark_calls
    host.see(0, stamp=1)
    wait_until(lambda: prerender.ready() == ['b', 'c'], HANG_GUARD, 'b and c ready, a skipped')


def test_a_client_goal_preempts_within_one_step_and_is_never_refused(worker):
    host = Host(gated=True)
    prerender = worker(host)
    host.see(0, stamp=1)
    host.gate.release(3)
    wait_until(lambda: host.steps == 3, HANG_GUARD, 'three steps of the background render')
    # the goal arrives during step 4: admission takes it as on an idle server ('reject')
    assert host.admission.offer(True, 'reject', 1) is None
    prerender.goal_arrived()
    claimed = threading.Event()

    def client():
        with prerender.claim():
            claimed.set()
            host.admission.accepted('goal', None, True, 'reject')
            host.admission.finish('goal')
    thread = threading.Thread(target=client)
    thread.start()
    assert not claimed.wait(0.2)  # the pipeline is the render's until its step ends
    host.gate.release(1)  # step 4 ends: the render must stop there, the goal starts
    thread.join(HANG_GUARD)
    assert claimed.is_set()
    assert host.renders == [('a', 1, 4, 'stopped')]
    assert prerender.stats['last_preempt_steps'] == 1
    assert prerender.stats['preempted'] == 1
    host.gate.release(2 * STEPS)  # idle again: the shelf is rendered from the start
    wait_until(lambda: prerender.ready() == ['a', 'b'], HANG_GUARD, 'the shelf after the goal')


def test_stop_ends_a_render_at_its_next_step_and_the_thread():
    host = Host(gated=True)
    prerender = Prerender(host)
    prerender.start()
    host.see(0, stamp=1)
    host.gate.release(2)
    wait_until(lambda: host.steps == 2, HANG_GUARD, 'two steps')
    stopper = threading.Thread(target=prerender.stop, args=(HANG_GUARD,))
    stopper.start()
    host.gate.release(1)
    stopper.join(HANG_GUARD)
    assert not prerender.running
    assert host.renders == [('a', 1, 3, 'stopped')]
    assert not [t for t in threading.enumerate() if t.name == 'prerender']


def test_results_are_dropped_when_the_person_leaves(worker):
    host = Host(forget_after=0.0)
    prerender = worker(host)
    host.see(0, stamp=1)
    wait_until(lambda: prerender.ready() == ['a', 'b'], HANG_GUARD, 'the shelf')
    host.shot = None
    wait_until(lambda: not prerender.ready(), HANG_GUARD, 'results dropped')
    assert prerender.stats['dropped'] == 1
    host.see(5, stamp=9)  # the next shopper: rendered for her frame
    wait_until(lambda: prerender.ready() == ['a', 'b'], HANG_GUARD, 'the shelf again')
    assert [r[1] for r in host.renders] == [1, 1, 9, 9]


def test_a_small_move_keeps_the_results_a_large_one_renders_again(worker):
    host = Host()
    prerender = worker(host)
    host.see(0, stamp=1)
    wait_until(lambda: prerender.ready() == ['a', 'b'], HANG_GUARD, 'the shelf')
    host.see(6, stamp=2)  # 6 px: a fifth of a shoulder width
    calls = host.landmark_calls
    wait_until(lambda: host.landmark_calls > calls, HANG_GUARD, 'a pose check of frame 2')
    assert prerender.ready() == ['a', 'b'] and prerender.stats['dropped'] == 0
    host.see(6, stamp=3)
    host.shot.person[0, 0, 1] = 0  # the pose is missed once (the mask still shows her)
    calls = host.landmark_calls
    wait_until(lambda: host.landmark_calls > calls, HANG_GUARD, 'a pose check of frame 3')
    assert prerender.ready() == ['a', 'b'] and prerender.stats['dropped'] == 0
    host.see(150, stamp=3)  # far beyond live.max_displacement (1.2 shoulder widths)
    wait_until(lambda: [r[1] for r in host.renders] == [1, 1, 3, 3], HANG_GUARD,
               'the shelf rendered again for frame 3')
    assert prerender.stats['dropped'] == 1


def test_lookup_answers_a_ready_garment_for_the_same_person_only(worker):
    host = Host()
    p2 = worker(host)
    host.see(0, stamp=1)
    wait_until(lambda: p2.ready() == ['a', 'b'], HANG_GUARD, 'the shelf')
    goal = host.plan('a')
    with p2.claim():
        hit = p2.lookup(goal, frame(0), 1)
        assert hit is not None and hit.garment == 'a' and hit.shot.stamp == 1
        assert p2.lookup(goal, frame(8), 2) is hit  # moved a little: live follow reaches it
        assert p2.lookup(goal, frame(150), 3) is None  # moved too far
        assert p2.lookup(goal, frame(0), None) is None  # not a camera frame
        assert p2.lookup(host.plan('c'), frame(0), 1) is None  # not ready
        steps = replace(goal, call=replace(CALL, num_inference_steps=STEPS - 1))
        assert p2.lookup(steps, frame(0), 1) is None  # asks for another render
        seed = replace(goal, call=replace(CALL, seed=6))
        assert p2.lookup(seed, frame(0), 1) is None
        assert p2.lookup(replace(seed, random_seed=True), frame(0), 1) is hit
        assert p2.lookup(replace(goal, cloth_type='lower'), frame(0), 1) is None
    assert p2.stats['hits'] == 3


def test_the_settings():
    assert schema.param('tryon.prerender').default == 'off'
    assert schema.param('tryon.prerender').choices == ('off', 'shelf', 'catalogue')
    assert 'tryon_server' in schema.param('live.max_displacement').nodes
    demo = load_yaml('config/demo.yaml')
    assert demo['tryon_server']['tryon.prerender'] == 'shelf'
    assert load_yaml('config/tryon.yaml')['tryon_server']['tryon.prerender'] == 'off'
    assert ShelfConfig('shelf', 2).garments(['a', 'b', 'c']) == ['a', 'b']
    assert ShelfConfig('catalogue', 2).garments(['a', 'b', 'c']) == ['a', 'b', 'c']
    assert ShelfConfig().garments(['a']) == []
    with pytest.raises(ValueError, match='valid: off, shelf, catalogue'):
        ShelfConfig('all')


def test_stop_never_waits_for_a_client_goal_that_holds_the_pipeline():
    host = Host()
    prerender = Prerender(host)
    with prerender.claim():  # a goal runs (for as long as it likes)
        prerender.start()
        host.see(0, stamp=1)
        wait_until(lambda: host.looks >= 2, HANG_GUARD, 'the worker looking')
        assert prerender.stop(HANG_GUARD) and not prerender.running
    assert not host.renders
