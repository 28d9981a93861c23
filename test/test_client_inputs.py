"""tryon_client input errors (one line, exit 2, no traceback) and its labelled panel."""

import os
from pathlib import Path
import subprocess
import sys

import cv2
import numpy as np
import pytest

from rosutil import free_domain_id, HANG_GUARD, LIB, ros_env
from vton_ros.goals import client_files as files

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


def test_missing_garment_names_known_ids_when_it_could_be_one():
    assert files.looks_like_path('shirt.png') and files.looks_like_path('a/b')
    assert not files.looks_like_path('red_tshirt')
    assert str(files.missing_garment('/tmp/no/shirt.png', None)) == \
        'file not found: /tmp/no/shirt.png'  # has a '/': never an id
    text = str(files.missing_garment('shirt.png', ['blue_dress', 'red_tshirt']))
    assert text.startswith('file not found: shirt.png;') and 'blue_dress, red_tshirt' in text
    assert 'did you mean the catalogue id red_tshirt?' in str(
        files.missing_garment('red_tshirt.png', ['red_tshirt']))
    assert 'no tryon_server answered' in str(files.missing_garment('shirt.png', None))


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
    (['--garment', 'shirt.png', '--server-timeout', '1'],
     'file not found: shirt.png (and no tryon_server answered to tell its garment ids)'),
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
