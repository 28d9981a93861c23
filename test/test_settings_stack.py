"""The stack builder of launch/tryon.launch.py and tryon_bringup (vton_ros.settings.stack)."""

import ast
from pathlib import Path

import pytest

from vton_ros.cli import tryon_bringup
from vton_ros.settings import files as param_files
from vton_ros.settings import stack as param_stack
from vton_ros.settings.stack import file_stack

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / 'config'
LAUNCH = ROOT / 'launch' / 'tryon.launch.py'


def names(paths):
    return [Path(p).resolve().name if Path(p).is_absolute() else str(p) for p in paths]


def test_the_file_stack_is_tryon_yaml_then_the_profiles_left_to_right_then_own_files():
    assert names(file_stack('none')) == names(file_stack('')) == ['tryon.yaml']
    assert names(file_stack()) == ['tryon.yaml', f'{param_stack.DEFAULT_PROFILE}.yaml']
    stacked = names(file_stack('cpu, demo', ['mine.yaml']))
    assert stacked == ['tryon.yaml', 'cpu.yaml', 'demo.yaml', 'mine.yaml']
    assert file_stack(str(CONFIG / 'fast.yaml'))[1] == CONFIG / 'fast.yaml'  # a path
    with pytest.raises(ValueError, match=r"unknown profile 'fastest'.*fast_cpu.*cpu,demo"):
        file_stack('cpu,fastest')
    with pytest.raises(ValueError, match='cannot be combined'):
        file_stack('cpu,none')


def test_combined_profiles_apply_left_to_right(tmp_path):
    for name, steps in (('a', 3), ('b', 7)):
        (tmp_path / f'{name}.yaml').write_text(
            '/**/tryon_server:\n  ros__parameters:\n    catvton:\n'
            f'      num_inference_steps: {steps}\n')
    a, b = str(tmp_path / 'a.yaml'), str(tmp_path / 'b.yaml')

    def steps(profile):
        return param_stack.build(profile).settings['tryon_server']['catvton.num_inference_steps']

    assert (steps(f'cpu,{a},{b}'), steps(f'cpu,{b},{a}'), steps('cpu')) == (7, 3, 10)
    server = param_stack.build(f'cpu,{a}').settings['tryon_server']
    assert (server['catvton.device'], server['catvton.height']) == ('cpu', 256)  # cpu stays


def test_demo_states_only_what_it_adds_over_cpu():
    under = param_files.load_files(file_stack('cpu'))
    demo = param_files.load_yaml(str(CONFIG / 'demo.yaml'))
    for node, values in demo.items():
        same = sorted(k for k, v in values.items() if under[node][k] == v)
        assert not same, f'demo.yaml repeats tryon.yaml + cpu.yaml for {node}: {same}'
    assert 'camera_node' not in demo  # the camera and the CPU devices: cpu.yaml's
    assert not any(k.startswith(('segmentation.', 'camera.')) or k == 'catvton.device'
                   for values in demo.values() for k in values)
    stacked = param_files.load_files(file_stack('cpu,demo'))
    assert stacked['segmentation_node']['segmentation.device'] == 'cpu'
    assert stacked['camera_node']['camera.source'] == 'sample:astronaut'
    assert (stacked['tryon_server']['catvton.height'], stacked['tryon_server']['catvton.seed'],
            stacked['tryon_server']['catvton.precision']) == (128, 42, 'fp32')


def test_overrides_shortcuts_win_over_set_and_reach_every_node_that_has_them():
    sets = ['catvton.device=cuda:1', 'catvton.num_inference_steps=4']
    built = param_stack.build('cpu', [], 'mirror_a/', sets, device='cuda', camera_source='0',
                              autostart=False)
    assert built.namespace == '/mirror_a'
    assert built.overrides == {'catvton.device': 'cuda', 'segmentation.device': 'cuda',
                               'camera.source': '0', 'lifecycle.autostart': False,
                               'catvton.num_inference_steps': 4}
    assert built.node_overrides('camera_node') == {'camera.source': '0',
                                                   'lifecycle.autostart': False}
    assert built.node_overrides('segmentation_node') == {'segmentation.device': 'cuda',
                                                         'lifecycle.autostart': False}
    assert built.node_overrides('mirror_ui') == {}
    server = built.settings['tryon_server']
    assert (server['catvton.device'], server['segmentation.device'],
            server['catvton.num_inference_steps']) == ('cuda', 'cuda', 4)
    assert built.settings['camera_node']['camera.source'] == '0'  # a string, not 0


def test_empty_shortcuts_keep_the_files_values():
    built = param_stack.build('none')
    assert built.overrides == {}
    assert built.settings['tryon_server']['catvton.device'] == 'cuda'  # tryon.yaml's
    assert built.settings['tryon_server']['lifecycle.autostart'] is True
    with pytest.raises(ValueError, match='did you mean catvton.num_inference_steps'):
        param_stack.build('cpu', sets=['catvton.num_inference_stepz=4'])
    with pytest.raises(ValueError, match='invalid namespace'):
        param_stack.build('cpu', namespace='1mirror')


def test_dds_environment_is_loopback_unless_the_environment_names_a_profile(tmp_path):
    loopback = param_stack.dds_environment({})
    assert Path(loopback['FASTDDS_DEFAULT_PROFILES_FILE']).name == 'fastdds_loopback.xml'
    assert Path(loopback['FASTDDS_DEFAULT_PROFILES_FILE']).is_file()
    assert loopback['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'SYSTEM_DEFAULT'
    assert param_stack.dds_environment({'FASTDDS_DEFAULT_PROFILES_FILE': 'mine.xml'}) == {}
    lan = tmp_path / 'lan.xml'
    lan.write_text('<profiles/>')
    assert param_stack.dds_environment({}, str(lan))['FASTDDS_DEFAULT_PROFILES_FILE'] == str(lan)
    with pytest.raises(ValueError, match='no Fast DDS profile file'):
        param_stack.dds_environment({}, str(tmp_path / 'missing.xml'))
    env = tryon_bringup.loopback_env()
    assert env['FASTDDS_DEFAULT_PROFILES_FILE']  # scripts/env.sh's, or the loopback one


def test_bringup_and_launch_share_the_builder_and_its_default_profile(capsys):
    assert tryon_bringup.build_parser().parse_args([]).profile == param_stack.DEFAULT_PROFILE
    assert tryon_bringup.main(['--profile', 'cpu,fastest']) == 2  # before any node starts
    assert "unknown profile 'fastest'" in capsys.readouterr().err
    tree = ast.parse(LAUNCH.read_text())  # launch itself is not installable here
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    built = [c for c in calls if ast.unparse(c.func) == 'param_stack.build']
    assert len(built) == 1 and ast.unparse(built[0].args[0]) == "arg('profile')"
    profile = [c for c in calls if ast.unparse(c.func) == 'DeclareLaunchArgument'
               and ast.literal_eval(c.args[0]) == 'profile']
    defaults = [ast.unparse(k.value) for k in profile[0].keywords if k.arg == 'default_value']
    assert defaults == ['param_stack.DEFAULT_PROFILE']
    assert any(ast.unparse(c.func) == 'param_stack.dds_environment' for c in calls)
