"""
tryon_client on the command line.

Input errors (one line, exit 2, before any wait), its bounded waits (no server, --timeout,
a lost goal reply), exit codes and its labelled panel.
"""

import os
from pathlib import Path
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from rosutil import free_domain_id, HANG_GUARD, LIB, node_argv, Proc, ros_env, script_argv
from stack import person_goal, server_params
from vton_ros.cli.tryon_client import build_parser, EXIT
from vton_ros.goals import client_files as files
from vton_ros.supervision import dds_shm

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def inputs(tmp_path):
    """Make a real image, a text file named .png and a folder."""
    good = tmp_path / 'shirt_photo.png'
    cv2.imwrite(str(good), np.full((40, 30, 3), 200, np.uint8))
    fake = tmp_path / 'notes.png'
    fake.write_text('not an image\n')
    folder = tmp_path / 'folder'
    folder.mkdir()
    return {'good': good, 'fake': fake, 'folder': folder, 'tmp': tmp_path}


def test_reading_inputs_says_what_is_wrong(inputs):
    assert files.read_rgb(str(inputs['good']), 'garment image').shape == (40, 30, 3)
    assert files.read_gray(str(inputs['good']), 'mask').shape == (40, 30)
    cases = {str(inputs['tmp'] / 'missing.png'): f'file not found: {inputs["tmp"]}/missing.png',
             str(inputs['folder']): 'is a folder, not an image file',
             str(inputs['fake']): 'is not an image OpenCV can read',
             str(ROOT / 'README.md'): 'is not an image OpenCV can read'}
    for arg, message in cases.items():
        with pytest.raises(files.InputError, match=message) as err:
            files.read_rgb(arg, 'garment image')
        assert '\n' not in str(err.value)


def test_missing_garment_says_how_an_id_is_written():
    assert files.looks_like_path('shirt.png') and files.looks_like_path('a/b')
    assert not files.looks_like_path('red_tshirt')
    assert str(files.missing_garment('/tmp/no/shirt.png')) == \
        'file not found: /tmp/no/shirt.png'  # has a '/': never an id
    assert str(files.missing_garment('red_tshirt.png')) == (
        "file not found: red_tshirt.png (a garment id of the server's catalogue has no "
        'suffix: --garment red_tshirt)')


def test_outputs_are_checked_before_the_goal(inputs):
    files.check_output(str(inputs['tmp'] / 'new' / 'deeper' / 'r.png'), '--out')
    for arg, message in ((inputs['folder'], 'is a folder'),
                         (inputs['tmp'] / 'r.xyz', 'cannot write this image format'),
                         (inputs['fake'] / 'r.png', 'not a writable folder')):
        with pytest.raises(files.InputError, match=message):
            files.check_output(str(arg), '--out')


def test_panel_tiles_are_labelled():
    result = np.full((120, 90, 3), 90, np.uint8)
    mask = np.zeros((120, 90), np.uint8)
    mask[40:80] = 255
    image = files.panel(result.copy(), mask, result.copy(), result, height=240)
    assert image.shape == (240, 4 * 180, 3)
    for i in range(4):  # a white label box with dark text in each tile's top left
        corner = image[:18, i * 180:i * 180 + 40]
        assert (corner == 255).all(axis=2).mean() > 0.3 and (corner < 100).any(), i
    unlabelled = cv2.resize(result, (180, 240))
    assert np.array_equal(image[60:, 180 * 3:], unlabelled[60:])  # only the corner changes


@pytest.mark.stack
@pytest.mark.parametrize('argv,message', [
    (['--garment', '{tmp}/no_such_shirt.png'], 'file not found: {tmp}/no_such_shirt.png'),
    (['--garment', '{tmp}/folder'], 'garment image {tmp}/folder is a folder, not an image'),
    (['--garment', '{tmp}/notes.png'], 'garment image {tmp}/notes.png is not an image'),
    (['--garment', 'README.md'], 'garment image README.md is not an image'),
    (['--garment', 'red_tshirt', '--person', '{tmp}/nobody.jpg'],
     'file not found: {tmp}/nobody.jpg (person image)'),
    (['--garment', 'red_tshirt', '--mask', '{tmp}/notes.png'], 'mask {tmp}/notes.png is not'),
    (['--garment', 'red_tshirt', '--out', '{tmp}/folder'],
     '--out {tmp}/folder is a folder; give a file name'),
    (['--garment', 'shirt.png', '--server-timeout', '100000'],  # no wait: answered at once
     "file not found: shirt.png (a garment id of the server's catalogue has no suffix: "
     '--garment shirt)'),
    (['--garment', 'red_tshirt', '--steps', '-3', '--server-timeout', '100000'],
     "--steps -3: give a number of denoising steps >= 1, or 0 for the server's default "
     '(catvton.num_inference_steps)'),
    (['--garment', 'red_tshirt', '--timeout', '0'],
     '--timeout 0: give the seconds to wait for the result, > 0'),
])
def test_client_input_errors_are_one_line_exit_2(inputs, argv, message):
    tmp = inputs['tmp']
    env = ros_env(free_domain_id())
    run = subprocess.run([LIB / 'tryon_client', *[a.format(tmp=tmp) for a in argv]], env=env,
                         cwd=ROOT, capture_output=True, text=True, timeout=HANG_GUARD)
    assert run.returncode == 2, run.stdout + run.stderr
    line = run.stderr.strip()
    assert line.startswith(f'tryon_client: {message.format(tmp=tmp)}'), line
    assert len(line.splitlines()) == 1 and not run.stdout, run.stderr  # no traceback
    assert not os.path.exists(tmp / 'tryon_result.png')


def test_the_stack_commands_start_without_torch():
    code = ('import sys; import vton_ros.cli.tryon_bringup, vton_ros.cli.tryon_client, '
            'vton_ros.cli.vton_soak; '
            "print([m for m in ('torch', 'torchvision', 'diffusers') if m in sys.modules])")
    run = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                         text=True, timeout=HANG_GUARD)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == '[]'  # a bad argument is answered at once, also on a Jetson


def client(argv: list, env: dict, timeout: float = HANG_GUARD) -> subprocess.CompletedProcess:
    """Run tryon_client with these arguments; return the finished process."""
    return subprocess.run([LIB / 'tryon_client', *[str(a) for a in argv]], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.stack
@pytest.mark.parametrize('namespace,name', [('', '/tryon'), ('mirror_a', '/mirror_a/tryon')])
def test_without_a_server_it_says_at_once_what_it_waits_for(namespace, name):
    run = client(['--garment', 'red_tshirt', '--server-timeout', '2', '--namespace', namespace],
                 ros_env(free_domain_id()))
    assert run.returncode == EXIT['no_server'][0] == 3, run.stderr
    lines = run.stderr.splitlines()
    assert lines[0] == f'tryon_client: waiting up to 2 s for the action server {name} ' \
                       '(tryon_server)', run.stderr  # the first thing it prints
    assert lines[1].startswith(f'tryon_client: no action server {name} after 2 s (is '
                               'tryon_server running? e.g. tryon_bringup --profile cpu,demo')
    assert len(lines) == 2 and not run.stdout, run.stderr


def test_exit_codes_are_listed_in_help_and_readme():
    codes = sorted(code for code, _ in EXIT.values())
    assert codes == list(range(len(EXIT)))  # one code per kind of failure
    text = build_parser().format_help()
    readme = (ROOT / 'README.md').read_text()
    for code, meaning in EXIT.values():
        words = ' '.join(meaning.split())
        assert f'{code} {words.split()[0]}' in ' '.join(text.split()), (code, text)
        assert f'| {code} | {meaning} |' in readme, (code, meaning)


def write_inputs(folder):
    """Write person_goal's person and mask as files; return their paths."""
    goal = person_goal()
    person, mask = folder / 'person.png', folder / 'mask.png'
    rgb = np.frombuffer(goal.person_image.data, np.uint8).reshape(120, 96, 3)
    cv2.imwrite(str(person), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(mask), np.frombuffer(goal.mask.data, np.uint8).reshape(120, 96))
    return person, mask


@pytest.mark.stack
def test_timeout_cancels_the_goal_and_ends_the_progress_line(tmp_path, tiny_weights):
    env = ros_env(free_domain_id())
    params = dict(server_params(tiny_weights), **{'catvton.height': 256, 'catvton.width': 192,
                                                  'tryon.preview_every': 0})
    server = Proc(node_argv('tryon_server', params), env, tmp_path / 'server.log')
    try:
        server.wait_for_log('configured and activated')
        person, mask = write_inputs(tmp_path)
        run = client(['--garment', ROOT / 'garments' / 'red_tshirt.png', '--person', person,
                      '--mask', mask, '--steps', '1000', '--timeout', '3',
                      '--out', tmp_path / 'r.png'], env)  # 1000 steps at 256x192: minutes
        assert run.returncode == EXIT['timeout'][0] == 5, run.stderr
        lines = run.stderr.split('\n')
        assert lines[-2:] == ['tryon_client: no result within --timeout 3 s: canceled the '
                              'goal', ''], run.stderr  # one line of its own, then the end
        assert not [x for x in lines if x.startswith('try-on:') and 'tryon_client' in x]
        assert not run.stdout and not (tmp_path / 'r.png').exists()
        server.wait_for_log('ended CANCELED')  # the server stopped working for nobody
    finally:
        assert server.stop() == 0, server.log()


@pytest.mark.stack
def test_a_finished_client_leaves_no_shared_memory(tmp_path, tiny_weights):
    env = ros_env(free_domain_id())
    server = Proc(node_argv('tryon_server', server_params(tiny_weights)), env,
                  tmp_path / 'server.log')
    try:
        server.wait_for_log('configured and activated')
        person, mask = write_inputs(tmp_path)
        proc = subprocess.Popen([LIB / 'tryon_client', '--garment',
                                 ROOT / 'garments' / 'red_tshirt.png', '--person', person,
                                 '--mask', mask, '--steps', '1', '--out', tmp_path / 'r.png'],
                                env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        segments, deadline = set(), time.monotonic() + HANG_GUARD
        while proc.poll() is None and time.monotonic() < deadline:  # read while it lives
            segments.update(n for n in dds_shm.own_files(proc.pid) if dds_shm.is_segment(n))
            time.sleep(0.05)
        _, err = proc.communicate(timeout=HANG_GUARD)
        assert proc.returncode == 0 and (tmp_path / 'r.png').exists(), err
        assert segments, 'its Fast DDS segment was never seen'
        # its action client went with its node: the participant gave its 67 MB back
        assert not [n for n in segments if (dds_shm.SHM_DIR / n).exists()], err
    finally:
        assert server.stop() == 0, server.log()


@pytest.mark.stack
def test_a_lost_goal_reply_is_found_on_the_status_topic(tmp_path):
    env = ros_env(free_domain_id())
    raw = Proc(script_argv(ROOT / 'test' / 'processes' / 'raw_action_server.py', 'lost_reply'),
               env, tmp_path / 'raw.log')
    try:
        raw.wait_for_log('ready')
        person, mask = write_inputs(tmp_path)
        run = client(['--garment', ROOT / 'garments' / 'red_tshirt.png', '--person', person,
                      '--mask', mask, '--out', tmp_path / 'r.png'], env)
        assert 'goal listed, its reply withheld' in raw.log()
        # the client took the acceptance from the status topic and asked for the result
        assert run.returncode == EXIT['failed'][0], run.stderr
        assert run.stderr.splitlines()[-1] == ('tryon_client: failed: PIPELINE_ERROR: ended by '
                                               'raw_action_server lost_reply'), run.stderr
    finally:
        raw.stop()
