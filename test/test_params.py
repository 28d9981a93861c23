"""The settings schema: config files, validation, descriptors, overrides."""

from pathlib import Path

import pytest

from vton_ros import params
from vton_ros.nodes.common import descriptor
from vton_ros.pipeline import masks, schedulers, weights

CONFIGS = sorted((Path(__file__).resolve().parents[1] / 'config').glob('*.yaml'))


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.name)
def test_config_files_are_complete_and_valid(path):
    values = params.load_yaml(str(path))
    assert set(values) == set(params.NODES)
    for node in params.NODES:
        assert set(values[node]) == set(params.defaults(node)), node


def test_paper_profile():
    server = params.load_yaml(str(CONFIGS[[p.name for p in CONFIGS].index('tryon.yaml')]))[
        'tryon_server']
    assert server['catvton.precision'] == 'bf16'
    assert (server['catvton.height'], server['catvton.width']) == (512, 384)
    assert server['catvton.scheduler'] == 'dpmpp_2m'
    assert server['catvton.num_inference_steps'] == 10
    assert server['catvton.gpu_memory_fraction'] == 0.85
    assert server['catvton.cudnn_benchmark'] is True


def test_unknown_key_is_an_error(tmp_path):
    path = tmp_path / 'bad.yaml'
    path.write_text('tryon_server:\n  ros__parameters:\n    catvton:\n'
                    '      num_inference_stepz: 4\n')
    with pytest.raises(ValueError, match='num_inference_stepz'):
        params.load_yaml(str(path))
    path.write_text('tryon_server:\n  ros__parameters:\n    camera:\n      fps: 4.0\n')
    with pytest.raises(ValueError, match='belongs to camera_node'):
        params.load_yaml(str(path))
    path.write_text('mirror_node:\n  ros__parameters: {}\n')
    with pytest.raises(ValueError, match='unknown node'):
        params.load_yaml(str(path))


def test_choices_match_the_pipeline():
    assert set(params.SCHEDULERS) == set(schedulers.SCHEDULERS)
    assert set(params.ATTN_VERSIONS) == set(weights.ATTN_VERSIONS)
    assert tuple(params.CLOTH_TYPES) == tuple(masks.CLOTH_TYPES)


@pytest.mark.parametrize('name,value,message', [
    ('catvton.height', 500, 'multiple of 8'),
    ('catvton.height', 8, 'below its minimum'),
    ('catvton.guidance_scale', 99.0, 'above its maximum'),
    ('catvton.scheduler', 'plms', 'not one of'),
    ('catvton.num_inference_steps', 'ten', 'expects int'),
    ('camera.mirror', 'maybe', 'expects bool'),
])
def test_validate_rejects_with_a_reason(name, value, message):
    with pytest.raises(ValueError, match=message):
        params.param(name).validate(value)


def test_overrides_apply_to_every_node_with_the_setting():
    overrides = params.parse_overrides(['segmentation.device=cpu',
                                        'catvton.num_inference_steps=4'])
    merged = params.merge({}, overrides)
    assert merged['segmentation_node']['segmentation.device'] == 'cpu'
    assert merged['tryon_server']['segmentation.device'] == 'cpu'
    assert merged['tryon_server']['catvton.num_inference_steps'] == 4
    assert 'catvton.num_inference_steps' not in merged['camera_node']
    with pytest.raises(ValueError, match='NAME=VALUE'):
        params.parse_overrides(['catvton.height'])
    with pytest.raises(ValueError, match='unknown setting'):
        params.parse_overrides(['catvton.heigth=512'])


def test_dump_and_load_round_trip(tmp_path):
    values = {n: params.defaults(n) for n in params.NODES}
    path = tmp_path / 'all.yaml'
    path.write_text(params.dump_yaml(values))
    assert params.load_yaml(str(path)) == values


def test_descriptors_carry_ranges_and_read_only():
    height = descriptor(params.param('catvton.height'))
    assert height.integer_range[0].from_value == 64 and height.integer_range[0].step == 8
    assert not height.read_only
    device = descriptor(params.param('catvton.device'))
    assert device.read_only and device.description
    fraction = descriptor(params.param('catvton.gpu_memory_fraction'))
    assert fraction.floating_point_range[0].to_value == 1.0
    assert 'one of' in descriptor(params.param('tryon.busy_policy')).additional_constraints
