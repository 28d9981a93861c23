"""
The onnxruntime backend through the real action server: parity with torch and refusals.

Two tryon_server processes (goals carry their own person and mask) on the same tiny RANDOM
weights, one with catvton.backend torch and one with onnxruntime on an
export_onnx folder of those weights, get the same goals: the paper settings, then the
speed options (guidance interval, DeepCache) set at runtime. fp32 onnxruntime must equal
fp32 torch within 1/255 on every pixel of the result and of the tiny-decoder previews.
"""

from pathlib import Path

import numpy as np
import pytest
from rosutil import free_domain_id, node_argv, ros_env, start_fails
from stack import person_goal, R, server_params, System
from vton_ros.nodes import image_conv

pytestmark = pytest.mark.stack  # node processes: not in make check

COMMON = {'catvton.attn_version': 'vitonhd', 'catvton.preview_decoder': 'tiny',
          'tryon.preview_every': 1}


@pytest.fixture(scope='module')
def systems(tmp_path_factory, tiny, onnx_export):
    """(torch system, onnxruntime system) on the same weights."""
    root = Path(tiny['vae']).parent
    common = dict(COMMON, **{'catvton.tiny_vae': tiny['tiny_vae']})
    both = (System(tmp_path_factory.mktemp('torch'), root, server=common, camera=False),
            System(tmp_path_factory.mktemp('ort'), root, camera=False, server=dict(common, **{
                'catvton.backend': 'onnxruntime', 'catvton.onnx_dir': str(onnx_export)})))
    yield both
    for sys_ in both:
        if sys_.client.context.ok():
            sys_.close()


def _pixels(image) -> np.ndarray:
    return image_conv.to_rgb(image).astype(int)


def _same_goal_same_image(systems, **goal) -> None:
    outs = [sys_.send(person_goal(**goal)) for sys_ in systems]
    for out in outs:
        assert out.result.error_code == R.SUCCESS, out.result.message
    ref, got = (_pixels(out.result.image) for out in outs)
    assert ref.shape == got.shape and np.abs(ref - got).max() <= 1, np.abs(ref - got).max()
    previews = [[_pixels(f.preview) for f in out.feedback if f.preview.width]
                for out in outs]
    assert len(previews[0]) == len(previews[1]) == 4
    for a, b in zip(*previews):
        assert np.abs(a - b).max() <= 1
    assert not np.array_equal(ref, _pixels(person_goal().person_image))  # it painted


def test_onnxruntime_equals_torch_with_paper_settings_and_speed_options(systems):
    _same_goal_same_image(systems)
    _same_goal_same_image(systems, guidance_scale=1.0)  # batch-1 UNet steps
    for sys_ in systems:
        for name, value in (('catvton.guidance_end', 0.5), ('catvton.cache_interval', 2),
                            ('catvton.scheduler', 'euler')):
            assert sys_.set_param(name, value).successful
    _same_goal_same_image(systems, seed=11)


def test_settings_the_export_cannot_serve_are_refused_per_goal(systems):
    ort = systems[1]
    assert ort.set_param('catvton.cache_branch', 1).successful
    out = ort.send(person_goal()).result
    assert out.error_code == R.INVALID_ARGUMENT and 'cache_branch must be 0' in out.message
    assert ort.set_param('catvton.cache_branch', 0).successful
    assert ort.set_param('catvton.height', 72).successful
    out = ort.send(person_goal()).result
    assert out.error_code == R.INVALID_ARGUMENT and '64x48' in out.message, out.message
    assert ort.set_param('catvton.height', 64).successful
    assert ort.send(person_goal()).result.error_code == R.SUCCESS
    assert ort.server.popen.poll() is None


@pytest.mark.parametrize('change, words', [
    ({'catvton.cudnn_benchmark': True, 'catvton.onnx_dir': "''"},  # YAML: empty
     ['catvton.cudnn_benchmark is for the torch backend', 'set catvton.onnx_dir']),
    ({'catvton.width': 56}, ['catvton.width is 56, the export 48', 'export_onnx --params-file']),
])
def test_onnxruntime_server_refuses_to_start_with_a_reason(tiny, onnx_export, change, words):
    params = dict(server_params(Path(tiny['vae']).parent), **COMMON, **{
        'catvton.tiny_vae': tiny['tiny_vae'], 'catvton.backend': 'onnxruntime',
        'catvton.onnx_dir': str(onnx_export)})
    params.update(change)
    out = start_fails(node_argv('tryon_server', params), ros_env(free_domain_id()))
    assert '[tryon_server]: cannot start' in out, out
    assert all(w in out for w in words), out
