"""The settings schema: config files, validation, descriptors, overrides."""

from pathlib import Path

import pytest

from vton_ros.nodes.common import descriptor
from vton_ros.settings import files as param_files
from vton_ros.settings import schema as params
from vton_ros.settings.stack import file_stack

CONFIGS = sorted((Path(__file__).resolve().parents[1] / 'config').glob('*.yaml'))


BASE = CONFIGS[[p.name for p in CONFIGS].index('tryon.yaml')]
PROFILES = [p for p in CONFIGS if p != BASE]


def test_reference_file_states_every_setting():
    values = param_files.load_yaml(str(BASE))
    assert set(values) == set(params.NODES)
    for node in params.NODES:
        assert set(values[node]) == set(params.defaults(node)), node


@pytest.mark.parametrize('path', PROFILES, ids=lambda p: p.name)
def test_profiles_are_strict_overlays_that_state_only_what_differs(path):
    base = param_files.load_yaml(str(BASE))
    overlay = param_files.load_yaml(str(path))  # strict: unknown keys raise
    for node, values in overlay.items():
        same = {k for k, v in values.items() if base[node][k] == v}
        assert not same, f'{path.name} repeats tryon.yaml for {node}: {sorted(same)}'
    stacked = param_files.load_files(file_stack(path.stem))
    assert stacked == {n: {**base[n], **overlay.get(n, {})} for n in params.NODES}


def test_paper_profile():
    server = param_files.load_yaml(str(BASE))['tryon_server']
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
        param_files.load_yaml(str(path))
    path.write_text('tryon_server:\n  ros__parameters:\n    camera:\n      fps: 4.0\n')
    with pytest.raises(ValueError, match='belongs to camera_node'):
        param_files.load_yaml(str(path))
    path.write_text('mirror_node:\n  ros__parameters: {}\n')
    with pytest.raises(ValueError, match='unknown node'):
        param_files.load_yaml(str(path))


@pytest.mark.parametrize('name,value,message', [
    ('catvton.height', 500, 'multiple of 8'),
    ('catvton.height', 8, 'below its minimum'),
    ('catvton.guidance_scale', 99.0, 'above its maximum'),
    ('catvton.scheduler', 'plms', 'not one of'),
    ('catvton.num_inference_steps', 'ten', "expects an integer, got string 'ten'"),
    ('catvton.num_inference_steps', 4.0, 'expects an integer, got double 4.0; write 4'),
    ('catvton.guidance_scale', 4, 'expects a double, got integer 4; write 4.0'),
    ('camera.mirror', 'maybe', "expects a bool, got string 'maybe'; write true or false"),
    ('camera.source', 0, "expects a string, got integer 0; quote it: '0'"),
])
def test_validate_rejects_with_a_reason(name, value, message):
    with pytest.raises(ValueError, match=message):
        params.param(name).validate(value)


def test_overrides_apply_to_every_node_with_the_setting():
    overrides = param_files.parse_overrides(['segmentation.device=cpu',
                                             'catvton.num_inference_steps=4'])
    merged = param_files.merge({}, overrides)
    assert merged['segmentation_node']['segmentation.device'] == 'cpu'
    assert merged['tryon_server']['segmentation.device'] == 'cpu'
    assert merged['tryon_server']['catvton.num_inference_steps'] == 4
    assert 'catvton.num_inference_steps' not in merged['camera_node']
    with pytest.raises(ValueError, match='NAME=VALUE'):
        param_files.parse_overrides(['catvton.height'])
    with pytest.raises(ValueError, match='did you mean catvton.height'):
        param_files.parse_overrides(['catvton.heigth=512'])
    with pytest.raises(ValueError, match='empty setting name'):
        param_files.parse_overrides(['=512'])
    assert param_files.parse_overrides(['catvton.guidance_scale=4']) == {
        'catvton.guidance_scale': 4.0}  # command-line text is parsed, not typed


def test_dump_and_load_round_trip(tmp_path):
    values = {n: params.defaults(n) for n in params.NODES}
    path = tmp_path / 'all.yaml'
    path.write_text(param_files.dump_yaml(values))
    assert param_files.load_yaml(str(path)) == values


def test_descriptors_carry_ranges_and_read_only():
    height = descriptor(params.param('catvton.height'))
    assert height.integer_range[0].from_value == 64 and height.integer_range[0].step == 8
    assert not height.read_only
    device = descriptor(params.param('catvton.device'))
    assert device.read_only and device.description
    fraction = descriptor(params.param('catvton.gpu_memory_fraction'))
    assert fraction.floating_point_range[0].to_value == 1.0
    assert 'one of' in descriptor(params.param('tryon.busy_policy')).additional_constraints


def test_unknown_and_empty_names_are_refused_with_close_matches():
    with pytest.raises(ValueError, match='did you mean catvton.num_inference_steps'):
        params.validate('tryon_server', {'catvton.num_inference_step': 4})
    with pytest.raises(ValueError, match='empty setting name'):
        params.validate('tryon_server', {'': 4})
    with pytest.raises(ValueError, match='listed in config'):
        params.param('zzz')


def test_given_parameters_must_be_settings_of_some_node():
    assert params.check_given(['camera.fps', 'catvton.seed', 'use_sim_time',
                               'qos_overrides./image_raw.publisher.depth']) == []
    assert params.check_given(['robot_name', 'nav.speed', 'camera.fps']) == [
        'robot_name', 'nav.speed']  # another package's, from a shared file: a warning
    with pytest.raises(ValueError, match="'camera.fsp'; did you mean camera.fps"):
        params.check_given(['camera.fps', 'camera.fsp'])
    with pytest.raises(ValueError, match="'catvton.gudance_scale'; did you mean"):
        params.check_given(['catvton.gudance_scale'])


@pytest.mark.parametrize('typo,expected', [
    ('catvton.num_inference_step', ['catvton.num_inference_steps']),  # not guidance_*
    ('catvton.gudance_scale', ['catvton.guidance_scale']),
    ('catvtn.guidance_scale', ['catvton.guidance_scale']),
    ('guidance_scale', ['catvton.guidance_scale']),
    ('catvton.guidance', ['catvton.guidance_end', 'catvton.guidance_scale',
                          'catvton.guidance_start']),
    ('catvton.cache', ['catvton.cache_branch', 'catvton.cache_interval']),
    ('catvton.zzzzzz', []),
])
def test_suggestions_are_ranked_close_names_three_at_most(typo, expected):
    assert params.close_names(typo) == expected
    with pytest.raises(ValueError) as err:
        params.param(typo)
    shown = str(err.value).partition('did you mean ')[2].rstrip('?').split(' or ')
    assert shown == (expected or [''])


def test_type_rules_typed_files_and_command_line_text(tmp_path):
    """A YAML file is typed as ROS types it (4 is an integer); --set text is parsed."""
    path = tmp_path / 'p.yaml'
    path.write_text('/**/tryon_server:\n  ros__parameters:\n    catvton:\n'
                    '      guidance_scale: 4\n')
    with pytest.raises(ValueError, match='expects a double, got integer 4; write 4.0'):
        param_files.load_yaml(str(path))
    path.write_text(path.read_text().replace(': 4', ': 4.0'))
    assert param_files.load_yaml(str(path))['tryon_server']['catvton.guidance_scale'] == 4.0
    assert param_files.parse_overrides(['catvton.guidance_scale=4', 'catvton.seed=7',
                                        'camera.mirror=false', 'camera.source=0']) == {
        'catvton.guidance_scale': 4.0, 'catvton.seed': 7, 'camera.mirror': False,
        'camera.source': '0'}
    with pytest.raises(ValueError, match='expects an integer'):
        param_files.parse_overrides(['catvton.seed=7.5'])


@pytest.mark.parametrize('key,namespace,applies', [
    ('camera_node', '/', True), ('camera_node', '/mirror_a', False),
    ('/camera_node', '/', True), ('/**/camera_node', '/', True),
    ('/**/camera_node', '/mirror_a', True), ('/**/camera_node', 'site/mirror_b', True),
    ('/mirror_a/camera_node', '/mirror_a', True), ('/mirror_a/camera_node', '/mirror_b', False),
    ('/*/camera_node', '/mirror_a', True), ('/*/camera_node', '/', False),
    ('/**', '/a/b', True), ('/**/segmentation_node', '/mirror_a', False),
])
def test_node_keys_match_like_rcl(key, namespace, applies):
    assert param_files.node_key_matches(key, namespace, 'camera_node') is applies


def test_wildcard_keys_apply_in_any_namespace_and_stay_strict(tmp_path):
    path = tmp_path / 'multi.yaml'
    path.write_text(
        '/**:\n  ros__parameters:\n    qos: {depth: 3}\n'
        '/**/tryon_server:\n  ros__parameters:\n    catvton: {num_inference_steps: 3}\n'
        '/mirror_b/tryon_server:\n  ros__parameters:\n    catvton: {num_inference_steps: 5}\n'
        'camera_node:\n  ros__parameters:\n    camera: {fps: 4.0}\n')
    root = param_files.load_yaml(str(path))
    assert root['tryon_server'] == {'qos.depth': 3, 'catvton.num_inference_steps': 3}
    assert root['camera_node'] == {'qos.depth': 3, 'camera.fps': 4.0}
    mirror_b = param_files.load_yaml(str(path), 'mirror_b')
    assert mirror_b['tryon_server']['catvton.num_inference_steps'] == 5  # later key wins
    assert mirror_b['camera_node'] == {'qos.depth': 3}  # bare name: root namespace only
    for body, message in (
            ('/**/tryon_servr:\n  ros__parameters: {}\n', 'did you mean /\\*\\*/tryon_server'),
            ('/**:\n  ros__parameters:\n    catvton: {stepz: 3}\n', 'unknown setting'),
            ('/mirror_b/camera_node:\n  ros__parameters:\n    catvton: {seed: 3}\n',
             'belongs to tryon_server')):
        path.write_text(body)
        with pytest.raises(ValueError, match=message):
            param_files.load_yaml(str(path), 'mirror_a')  # checked even where it does not apply
    with pytest.raises(ValueError, match='invalid namespace'):
        param_files.normalize_namespace('mirror a')
