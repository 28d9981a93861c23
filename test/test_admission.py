"""Goal admission, frame pairing and result files without ROS (vton_ros.goals.admission & co.)."""

from dataclasses import replace
import math
import os
import stat
import subprocess
import sys
import threading

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import Image
from vton_interfaces.action import TryOn
from vton_ros.goals import admission
from vton_ros.goals import result_files
from vton_ros.goals import tryon_job as tryon_core
from vton_ros.goals.admission import Admission, GoalError, PlainGoal, Request, STOPS
from vton_ros.media import samples
from vton_ros.media.garments import GarmentCatalog
from vton_ros.settings.views import CatVTONCall

CALL = CatVTONCall.defaults()


def validate(g, call: CatVTONCall = CALL, catalog=None):
    """Admission's check with the server's default settings."""
    return admission.validate(g, call, catalog, min_side=32, max_aspect=4.0,
                              cloth_type='upper')


def goal(**fields) -> PlainGoal:
    """Build a valid goal as the node decodes it: 36x48 person, its mask, a garment image."""
    mask = np.zeros((48, 36), np.uint8)
    mask[10:30, 5:25] = 255
    values = {'garment_image': np.full((40, 32, 3), 200, np.uint8), 'garment_id': '',
              'cloth_type': '', 'person_image': np.full((48, 36, 3), 120, np.uint8),
              'mask': mask, 'num_inference_steps': 0, 'guidance_scale': -1.0, 'seed': -1}
    return PlainGoal(**{**values, **fields})


@pytest.fixture(scope='module')
def catalog(tmp_path_factory):
    folder = tmp_path_factory.mktemp('garments')
    cv2.imwrite(str(folder / 'red_tshirt.png'), samples.garment('tshirt', height=64, width=48))
    cv2.imwrite(str(folder / 'blue_skirt.png'), samples.garment('skirt', height=64, width=48))
    (folder / 'catalog.yaml').write_text('blue_skirt: lower\n')
    return GarmentCatalog(str(folder))


@pytest.mark.slow
def test_no_ros_import():  # the node decodes the messages (nodes/tryon_goal)
    code = 'import sys, vton_ros.compat; vton_ros.compat.ensure_torchvision(); ' \
           'import vton_ros.goals.admission, vton_ros.goals.tryon_job; ' \
           'import vton_ros.goals.result_files; ' \
           'sys.exit(2 * any(m.startswith(("rclpy", "vton_ros.nodes", "sensor_msgs", ' \
           '"vton_interfaces")) for m in sys.modules))'
    assert subprocess.run([sys.executable, '-c', code]).returncode == 0


def test_every_code_is_an_action_constant():
    for code, _ in STOPS.values():
        assert isinstance(getattr(TryOn.Result, code), int)
    assert (TryOn.Result.SHUTTING_DOWN, TryOn.Result.TIMED_OUT,
            TryOn.Result.CLIENT_GONE) == (10, 11, 12)  # appended


def test_valid_goal_resolves_defaults(catalog):
    req = validate(goal(seed=-1, guidance_scale=-1.0), replace(CALL, seed=9), catalog)
    assert (req.call.num_inference_steps, req.call.guidance_scale, req.call.seed) == (10, 2.5, 9)
    assert req.cloth_type == 'upper' and req.garment_name == 'image'
    assert req.person.shape == (48, 36, 3) and req.mask.shape == (48, 36)
    skirt = validate(goal(garment_image=None, garment_id='blue_skirt'), catalog=catalog)
    assert skirt.cloth_type == 'lower' and skirt.garment_name == 'blue_skirt'
    camera = validate(goal(person_image=None, mask=None))
    assert camera.person is None and camera.mask is None
    assert 0 <= validate(goal(seed=-1)).call.seed < 2 ** 31  # random


BAD = {
    'undecodable person': ({'person_image': GoalError('INVALID_IMAGE', 'person_image: bad')},
                           'INVALID_IMAGE', 'person_image: bad'),
    'undecodable mask': ({'mask': GoalError('INVALID_IMAGE', 'mask: bad')}, 'INVALID_IMAGE',
                         'mask: bad'),
    'undecodable garment': ({'garment_image': GoalError('INVALID_IMAGE', 'garment_image: x')},
                            'INVALID_IMAGE', 'garment_image: x'),
    'mask size': ({'mask': np.full((40, 32), 255, np.uint8)}, 'INVALID_IMAGE', 'mask is 32x40'),
    'empty mask': ({'mask': np.zeros((48, 36), np.uint8)}, 'INVALID_IMAGE', 'mask is empty'),
    'no garment': ({'garment_image': None}, 'INVALID_ARGUMENT', 'no garment'),
    'unknown id': ({'garment_image': None, 'garment_id': 'hat'}, 'UNKNOWN_GARMENT', 'hat'),
    'cloth type': ({'cloth_type': 'hat'}, 'INVALID_ARGUMENT', 'cloth_type'),
    'steps': ({'num_inference_steps': 1001}, 'INVALID_ARGUMENT', 'num_inference_steps'),
    'guidance': ({'guidance_scale': math.inf}, 'INVALID_ARGUMENT', 'guidance_scale'),
    'newline id': ({'garment_image': None, 'garment_id': 'x\n[ERROR] forged'},
                   'INVALID_ARGUMENT', 'control character U\\+000A'),
    'long id': ({'garment_image': None, 'garment_id': 'a' * 100_000}, 'INVALID_ARGUMENT',
                'garment_id is 100000 characters long'),
    'escape type': ({'cloth_type': '\x1b[2J'}, 'INVALID_ARGUMENT', 'cloth_type'),
    # the checks keep their order: ids, garment, cloth type, person, mask, overrides
    'bad type first': ({'cloth_type': 'hat', 'person_image': GoalError('INVALID_IMAGE', 'p')},
                       'INVALID_ARGUMENT', 'cloth_type'),
    'garment first': ({'garment_image': GoalError('INVALID_IMAGE', 'g'), 'cloth_type': 'hat'},
                      'INVALID_IMAGE', 'g'),
    'person first': ({'person_image': GoalError('INVALID_IMAGE', 'p'),
                      'mask': GoalError('INVALID_IMAGE', 'm')}, 'INVALID_IMAGE', 'p'),
}


@pytest.mark.parametrize('case', list(BAD))
def test_invalid_goal_names_code_and_reason(catalog, case):
    fields, code, words = BAD[case]
    with pytest.raises(GoalError, match=words) as err:
        validate(goal(**fields), catalog=catalog)
    assert err.value.code == code


def test_no_catalogue_is_unknown_garment():
    with pytest.raises(GoalError, match='garments.catalog_dir') as err:
        validate(goal(garment_image=None, garment_id='x'))
    assert err.value.code == 'UNKNOWN_GARMENT'


def test_describe_for_logs(catalog):
    g = goal(garment_image=None, garment_id='blue_skirt')
    assert admission.describe(g, validate(g, catalog=catalog)) == \
        'garment blue_skirt, lower, 10 steps'
    assert admission.describe(goal(num_inference_steps=4), GoalError('X', 'y')) == \
        'garment image, -, 4 steps'
    assert admission.describe(goal(), GoalError('X', 'y')).endswith('default steps')
    forged = goal(garment_image=None, garment_id='a\n[FATAL] x' + 'b' * 5000,
                  cloth_type='\x1b[31m')
    line = admission.describe(forged, GoalError('X', 'y'))
    assert line.isprintable() and len(line) < 200, line
    assert 'a\\n[FATAL]' in line and '\\x1b[31m' in line


def test_small_catalogue_garment_is_invalid_image(tmp_path):
    cv2.imwrite(str(tmp_path / 'stamp.png'), np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(GoalError, match='too small') as err:
        validate(goal(garment_image=None, garment_id='stamp'),
                 catalog=GarmentCatalog(str(tmp_path)))
    assert err.value.code == 'INVALID_IMAGE'


# ---- run / queue / preempt / reject bookkeeping -------------------------------------


def start(adm: Admission, key, policy='reject', valid=True, queue_size=4):
    """Offer and accept a goal; return (refusal, handles to execute now)."""
    refusal = adm.offer(valid, policy, queue_size)
    return refusal, ([] if refusal else adm.accepted(key, f'h{key}', valid, policy))


def test_reject_policy_refuses_valid_goals_while_busy():
    adm = Admission()
    assert start(adm, 1) == (None, ['h1'])
    assert start(adm, 2)[0] == 'busy (tryon.busy_policy reject)'
    assert start(adm, 3, valid=False) == (None, ['h3'])  # runs at once, only to be aborted
    assert adm.stop_error(1, 0.0) is None
    assert adm.finish(3) == (False, None) and adm.finish(1) == (False, None)
    assert start(adm, 4) == (None, ['h4'])


def test_queue_policy_runs_in_order_up_to_its_size():
    adm = Admission()
    start(adm, 1, 'queue', queue_size=2)
    assert start(adm, 2, 'queue', queue_size=2) == (None, [])
    assert start(adm, 3, 'queue', queue_size=2) == (None, [])
    assert 'queue full' in start(adm, 4, 'queue', queue_size=2)[0]
    assert start(adm, 5, 'queue', valid=False, queue_size=2) == (None, ['h5'])  # no slot
    assert adm.finish(1) == (False, 'h2')
    assert adm.finish(2) == (False, 'h3')
    assert adm.finish(3) == (False, None)


def test_goals_arriving_together_on_an_idle_server_run_and_queue():
    adm = Admission()  # both offered before either is handed to accepted()
    assert adm.offer(True, 'queue', 1) is None and adm.offer(True, 'queue', 1) is None
    assert 'queue full' in adm.offer(True, 'queue', 1)
    assert adm.accepted(1, 'h1', True, 'queue') == ['h1']
    assert adm.accepted(2, 'h2', True, 'queue') == []
    assert adm.finish(1) == (False, 'h2') and adm.finish(2) == (False, None)
    assert adm.offer(True, 'reject', 1) is None  # reject: the second one is refused
    assert adm.offer(True, 'reject', 1) == 'busy (tryon.busy_policy reject)'


def test_preempt_stops_running_and_waiting_but_not_for_an_invalid_goal():
    adm = Admission()
    start(adm, 1, 'preempt')
    assert start(adm, 2, 'preempt', valid=False) == (None, ['h2'])
    assert adm.stop_error(1, 0.0) is None  # an invalid goal preempts nothing
    assert start(adm, 3, 'preempt') == (None, [])
    assert adm.stop_error(1, 0.0).code == 'PREEMPTED'
    assert start(adm, 4, 'preempt') == (None, ['h3'])  # the waiting one ends at once
    assert adm.stop_error(3, 0.0).code == 'PREEMPTED' and adm.stop_error(4, 0.0) is None
    assert adm.finish(3) == (False, None)
    assert adm.finish(1) == (False, 'h4')


def test_cancel_running_waiting_and_finished_goals():
    adm = Admission()
    start(adm, 1, 'queue')
    start(adm, 2, 'queue')
    assert adm.cancel(2) == (True, 'h2')  # waiting: executed now to end canceled
    assert adm.stop_error(2, 0.0).code == 'CANCELED'
    assert adm.finish(2) == (True, None)
    assert adm.cancel(1) == (True, None)
    assert adm.stop_error(1, 0.0).code == 'CANCELED'
    assert adm.finish(1) == (True, None)  # the caller must end it canceled, whatever ran
    assert adm.cancel(1) == (False, None)  # finished: the cancel is refused


def test_a_cancel_before_the_goal_is_registered_ends_it_canceled():
    """The client may cancel as soon as the acceptance arrives, before accepted() runs."""
    adm = Admission()
    assert adm.offer(True, 'queue', 4) is None
    assert adm.cancel(5) == (True, None)
    assert adm.accepted(5, 'h5', True, 'queue') == ['h5']
    assert adm.stop_error(5, 0.0).code == 'CANCELED'
    assert adm.finish(5) == (True, None)
    assert adm.cancel(5) == (False, None)


def test_a_goal_whose_client_is_gone_stops_and_leaves_the_queue_at_once():
    adm = Admission()
    start(adm, 1, 'queue')
    start(adm, 2, 'queue')
    start(adm, 3, 'queue')
    assert adm.abandon(2) == (True, 'h2')  # waiting: executed now to end CLIENT_GONE
    assert adm.stop_error(2, 0.0).code == 'CLIENT_GONE'
    assert adm.finish(2) == (False, None)
    assert adm.abandon(1) == (True, None)  # running: stops within a step
    assert adm.stop_error(1, 0.0).code == 'CLIENT_GONE'
    assert adm.finish(1) == (False, 'h3')  # the next goal starts
    assert adm.abandon(1) == (False, None)  # finished: nothing to stop


def test_accepted_cancel_wins_over_preemption():
    adm = Admission()
    start(adm, 1, 'preempt')
    start(adm, 2, 'preempt')
    adm.cancel(1)
    assert adm.stop_error(1, 0.0).code == 'CANCELED'


def test_time_limit_counts_from_the_start_of_the_run():
    adm = Admission()
    start(adm, 1)
    adm.started(1, now=100.0, timeout=2.5)
    assert adm.stop_error(1, 102.4) is None
    err = adm.stop_error(1, 102.5)
    assert err.code == 'TIMED_OUT' and '2.5 s' in str(err)
    start(adm, 2)
    adm.started(2, now=0.0, timeout=0.0)  # 0 = no limit
    assert adm.stop_error(2, 1e9) is None


def test_shutdown_stops_everything_and_refuses_new_goals():
    adm = Admission()
    start(adm, 1, 'queue')
    start(adm, 2, 'queue')
    assert adm.offer(True, 'queue', 4) is None  # goal_callback passed, not yet accepted
    assert adm.shutdown() == (['h2'], True)
    assert adm.accepted(3, 'h3', True, 'queue') == ['h3']  # ends at once
    for key in (1, 2, 3):
        assert adm.stop_error(key, 0.0).code == 'SHUTTING_DOWN'
    assert 'shutting down' in adm.offer(True, 'queue', 4)
    assert not adm.wait_idle(0.01)
    threading.Timer(0.05, lambda: [adm.finish(k) for k in (1, 2, 3)]).start()
    assert adm.wait_idle(60.0)


def test_idle_shutdown_has_nothing_to_wait_for():
    assert Admission().shutdown() == ([], False)


def test_lifecycle_closes_until_activated_and_deactivate_reopens():
    adm = Admission(closed='inactive')
    assert 'not active' in adm.offer(True, 'queue', 4)
    adm.reopen()  # activate
    start(adm, 1, 'queue')
    start(adm, 2, 'queue')
    assert adm.shutdown('deactivated') == (['h2'], True)
    for key in (1, 2):
        error = adm.stop_error(key, 0.0)
        assert error.code == 'SHUTTING_DOWN' and 'deactivated' in str(error)
    assert 'deactivated' in adm.offer(True, 'queue', 4)
    adm.finish(1)
    adm.finish(2)
    adm.reopen()  # activate again
    assert start(adm, 3, 'queue') == (None, ['h3'])
    adm.shutdown()
    adm.reopen()  # a shut-down server stays shut
    assert 'shutting down' in adm.offer(True, 'queue', 4)


# ---- frame pairs, stale inputs, errors ------------------------------------------------


def stamped(sec: int) -> Image:
    msg = Image()
    msg.header.stamp.sec = sec
    return msg


def test_frame_pairs_match_stamps_and_age():
    pairs = tryon_core.FramePairs()
    assert pairs.latest() is None and pairs.age(0) is None
    frame = stamped(5)
    pairs.frame(frame)
    pairs.mask(stamped(4))  # no frame with that stamp
    assert pairs.latest() is None
    mask = stamped(5)
    pairs.mask(mask)
    assert pairs.latest() == (frame, mask)
    assert pairs.age(7_500_000_000) == 2.5


@pytest.mark.parametrize('age,level', [(None, 'ok'), (4.0, 'ok'), (6.0, 'warn'),
                                       (11.0, 'error')])
def test_stale_pair_health(age, level):
    got, message = tryon_core.pair_health(age, 10.0, 'ok', 'last goal succeeded')
    assert got == level
    assert ('s old' in message) == (level != 'ok')
    assert tryon_core.pair_health(6.0, 10.0, 'error', 'x')[0] == 'error'  # never better


def test_stale_pair_is_no_person_frame():
    tryon_core.check_pair_age(9.9, 10.0)
    with pytest.raises(GoalError, match='11.0 s old') as err:
        tryon_core.check_pair_age(11.0, 10.0)
    assert err.value.code == 'NO_PERSON_FRAME'


@pytest.mark.parametrize('error,code', [
    (RuntimeError('DefaultCPUAllocator: not enough memory: you tried to allocate 9 GB'),
     'OUT_OF_MEMORY'),
    (RuntimeError('shape mismatch'), 'PIPELINE_ERROR'),
    (KeyError('x'), 'PIPELINE_ERROR'),
    (GoalError('INVALID_IMAGE', 'x'), 'INVALID_IMAGE'),
])
def test_goal_error_codes(error, code):
    assert tryon_core.goal_error(error).code == code


def test_request_is_frozen():
    req = validate(goal())
    assert isinstance(req, Request)
    with pytest.raises(AttributeError):
        req.cloth_type = 'lower'


# ---- result files -------------------------------------------------------------------


def test_result_files_are_private_and_never_overwritten(tmp_path):
    folder = tmp_path / 'saved'
    image = np.zeros((8, 6, 3), np.uint8)
    mask = np.full((8, 6), 255, np.uint8)
    paths = {result_files.save_result(str(folder), f'goal{i}', image, mask, {'seed': i})
             for i in range(3)}
    assert len(paths) == 3 and len(list(folder.iterdir())) == 9
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o600}
    with pytest.raises(FileExistsError):
        result_files.write_private(next(iter(paths)), b'x')


def test_an_open_folder_of_ours_is_made_private(tmp_path):
    folder = tmp_path / 'open'
    folder.mkdir(mode=0o777)
    os.chmod(folder, 0o777)
    result_files.private_folder(str(folder))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


# ---- one try-on with the real (tiny) pipeline -----------------------------------------


@pytest.fixture(scope='module')
def tiny_pipe(tiny):
    from vton_ros.pipeline.catvton import CatVTONPipeline
    return CatVTONPipeline.from_pretrained(**tiny, device='cpu', dtype='fp32')


def test_try_on_composes_into_the_person_and_reports_each_step(tiny_pipe):
    req = validate(goal(num_inference_steps=3, seed=4), replace(CALL, height=64, width=48))
    steps = []
    reporter = tryon_core.StepReporter(lambda *a: steps.append(a), lambda: False, 2)
    timings = dict.fromkeys(tryon_core.STAGES, 0.0)
    image, mask, notes = tryon_core.try_on(tiny_pipe, req, req.person, req.mask, timings,
                                           reporter)
    assert image.shape == (48, 36, 3) and set(np.unique(mask)) <= {0, 255}
    assert 'RANDOM WEIGHTS' in notes and timings['denoise'] > 0
    assert [(s[0], s[1]) for s in steps] == [(1, 3), (2, 3), (3, 3)]
    assert [s[4] is None for s in steps] == [True, False, False]  # previews: 2nd and last
    assert steps[1][4].shape == (8, 6, 3)  # latent-sized


def test_images_the_pipeline_cannot_use_are_invalid_image(tiny_pipe):
    req = validate(goal(), replace(CALL, height=64, width=48))
    with pytest.raises(GoalError, match='cannot use the images') as err:
        tryon_core.try_on(tiny_pipe, req, req.person, req.mask[:20], {}, None)
    assert err.value.code == 'INVALID_IMAGE'
