"""What a newcomer meets first: missing-weights messages, tool help, quiet setup."""

import os
from pathlib import Path
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_tool(module: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m vton_ros.tools.<module>`` and capture its output."""
    return subprocess.run([sys.executable, '-m', f'vton_ros.tools.{module}', *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=env if env is not None else os.environ)


@pytest.mark.slow
def test_missing_weights_name_cache_setting_and_fetch(tmp_path):
    cache = tmp_path / 'hub'
    env = {k: v for k, v in os.environ.items()
           if k not in ('HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE', 'HF_HOME')}
    env['HF_HUB_CACHE'] = str(cache)
    done = run_tool('fetch_weights', '--check', env=env)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert [line.split(':')[0] for line in lines] == [
        'catvton.base_model', 'catvton.vae', 'catvton.attn_ckpt']
    for line, setting in zip(lines, ('catvton.base_model', 'catvton.vae', 'catvton.attn_ckpt')):
        assert f'Hugging Face cache {cache} ' in line  # the folder it looked in
        assert f'set {setting}=DIR to a local folder' in line
        assert '`fetch_weights`' in line
        assert 'offline' not in line.lower() and 'HF_HUB_OFFLINE' not in line
    env['HF_HUB_OFFLINE'] = '1'
    offline = run_tool('fetch_weights', '--check', env=env)
    assert offline.returncode == 1
    assert 'offline mode is on (HF_HUB_OFFLINE)' in offline.stderr.splitlines()[0]


def test_missing_local_folder_names_the_setting(tmp_path):
    from vton_ros.pipeline import weights
    missing = tmp_path / 'no_vae'
    try:
        weights.resolve_model(str(missing), weights.vae_files())
    except weights.ModelNotFoundError as err:
        text = str(err)
    else:
        raise AssertionError('a missing folder was accepted')
    assert f'folder {missing} does not exist' in text
    assert 'catvton.vae=DIR' in text and 'fetch_weights' in text


def test_bench_help_shows_each_default_once():
    import re

    from vton_ros.tools.vton_bench import build_parser
    parser = build_parser()
    text = parser.format_help()
    assert '(default: None)' not in text and '(default: False)' not in text
    entries = re.split(r'\n  (?=-)', text.split('options:', 1)[1])
    assert len(entries) > 20
    for entry in entries:
        assert entry.count('default') <= 1, entry
    assert '(default: stages)' in text and '(default: 512)' in text


def test_bundled_catalogue_is_what_make_garments_draws(tmp_path):
    import cv2
    import numpy as np

    from vton_ros.media.garments import GarmentCatalog
    from vton_ros.tools.make_garments import CATALOG, main
    assert main(['--out', str(tmp_path)]) == 0
    bundled = GarmentCatalog(str(ROOT / 'garments'))
    assert bundled.ids() == sorted(CATALOG)
    assert (tmp_path / 'catalog.yaml').read_text() == (ROOT / 'garments/catalog.yaml').read_text()
    for gid in CATALOG:
        image, kind = bundled.load(gid)
        assert kind == CATALOG[gid][2]
        drawn = cv2.cvtColor(cv2.imread(str(tmp_path / f'{gid}.png')), cv2.COLOR_BGR2RGB)
        assert np.array_equal(image, drawn), gid  # regenerated pixels match the files
        assert (ROOT / 'garments' / f'{gid}.png').stat().st_size < 16_000  # small PNGs


def test_package_urls_resolve_to_the_installed_share_or_the_source_tree(tmp_path):
    from vton_ros.settings import package_paths
    share = package_paths.package_share()
    assert share == ROOT / 'install' / 'vton_ros' / 'share' / 'vton_ros'  # scripts/env.sh
    base = package_paths.resolve('package://vton_ros/models/demo/base')
    assert base == str(share / 'models/demo/base')
    for name in ('models/demo/base/unet/config.json', 'models/demo/vae/config.json',
                 'models/demo/catvton/vitonhd-16k-512/attention/model.safetensors',
                 'models/demo/taesd/diffusion_pytorch_model.safetensors',
                 'garments/catalog.yaml', 'garments/red_striped_shirt.png',
                 'config/demo.yaml'):
        assert (share / name).is_file(), name  # installed with the package (setup.py)
    assert package_paths.resolve('/abs/folder') == '/abs/folder'
    assert package_paths.resolve('owner/repo') == 'owner/repo'
    code = ('from vton_ros.settings import package_paths as p; '
            "print(p.resolve('package://vton_ros/garments'))")
    env = dict(os.environ, AMENT_PREFIX_PATH=str(tmp_path), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                         text=True, check=True, cwd=tmp_path).stdout.strip()
    assert out == str(ROOT / 'garments')  # not installed: the source tree
    for bad in ('package:///x', 'package://no_such_pkg/x'):
        try:
            package_paths.resolve(bad)
        except ValueError as err:
            assert 'package://' in str(err)
        else:
            raise AssertionError(bad)


def test_demo_profile_names_package_paths_and_runs_on_the_cpu():
    from vton_ros.settings import files as param_files
    from vton_ros.settings.stack import file_stack
    demo = param_files.load_yaml(str(ROOT / 'config' / 'demo.yaml'))  # overlay: test_params
    server = demo['tryon_server']
    assert server['catvton.base_model'] == 'package://vton_ros/models/demo/base'
    assert server['garments.catalog_dir'] == 'package://vton_ros/garments'
    assert server['catvton.tiny_vae'] == 'package://vton_ros/models/demo/taesd'
    stacked = param_files.load_files(file_stack('cpu,demo'))  # tryon, cpu, then demo
    devices = {stacked[node][key] for node in stacked
               for key in ('catvton.device', 'segmentation.device') if key in stacked[node]}
    assert devices == {'cpu'}
    assert stacked['tryon_server']['catvton.precision'] == 'fp32'


NATIVE_LINES = ('W0000', 'TensorFlow Lite', 'absl::InitializeLog')


@pytest.mark.slow
def test_native_logging_of_the_pose_masker_is_off_unless_asked():
    code = ('from vton_ros.media import samples\n'
            'from vton_ros.pipeline.masks import create_mask_generator\n'
            'import time\n'
            'masker = create_mask_generator("pose")\n'
            'time.sleep(1.0)\n'  # the graph's own threads would log by now
            'image = samples.portrait("astronaut")\n'
            'print([masker(image, "upper").status for _ in range(4)])\n'
            'masker.close()\n')
    quiet = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                           timeout=300, cwd=ROOT, env=dict(os.environ, VTON_NATIVE_LOGS='0'))
    assert quiet.returncode == 0, quiet.stderr
    assert "['ok', 'ok', 'ok', 'ok']" in quiet.stdout
    assert not any(line in quiet.stderr for line in NATIVE_LINES), quiet.stderr
    verbose = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                             timeout=300, cwd=ROOT, env=dict(os.environ, VTON_NATIVE_LOGS='1'))
    assert verbose.returncode == 0 and 'W0000' in verbose.stderr  # what quiet removes


def test_quiet_drops_only_native_lines(capfd):
    from vton_ros.pipeline import native_logs

    lines = [b'W0000 00:00:1733140000.1 12 inference_feedback_manager.cc:114] native\n',
             b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n',
             b'[ERROR] [1733140000.2] [segmentation_node]: kept from another thread\n',
             b'Traceback (most recent call last): kept\n']
    with native_logs.quiet():
        for line in lines:
            os.write(2, line)
    os.write(2, b'W0000 00:00:1733140001.0 12 after the block: kept\n')
    err = capfd.readouterr().err
    assert 'native' not in err and 'TensorFlow Lite' not in err
    assert err.count('kept') == 3 and err.index('another thread') < err.index('after the block')


def test_setup_shows_pip_progress_in_a_few_lines(tmp_path):
    script = (ROOT / 'scripts' / 'setup.sh').read_text()
    function = script[script.index('pip_progress() {'):script.index('\n}\n', script.index(
        'pip_progress() {')) + 3]
    pip_log = ''.join(f'Collecting pkg{i}==1.0\n  Downloading pkg{i}-1.0.whl ({i}.5 MB)\n'
                      for i in range(1, 26)) + 'Installing collected packages: ' + ', '.join(
        f'pkg{i}' for i in range(1, 26)) + '\nSuccessfully installed ' + ' '.join(
        f'pkg{i}-1.0' for i in range(1, 26)) + '\n'
    done = subprocess.run(['bash', '-c', function + '\npip_progress'], input=pip_log,
                          capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == [
        'setup: [1] collecting pkg1==1.0', 'setup: [10] downloading pkg10==1.0 (10.5 MB)',
        'setup: [11] collecting pkg11==1.0'] + [
        f'setup: [{i}] downloading pkg{i}==1.0 ({i}.5 MB)' for i in range(11, 21)] + [
        'setup: [21] collecting pkg21==1.0'] + [
        f'setup: [{i}] downloading pkg{i}==1.0 ({i}.5 MB)' for i in range(21, 26)] + [
        'setup: unpacking 25 packages (a minute or two)', 'setup: installed 25 packages']


def test_setup_left_the_bytecode_of_the_heavy_packages():
    """setup.sh installs with --no-compile and compiles on every core afterwards."""
    import importlib.util

    for name in ('torch', 'diffusers', 'mediapipe', 'rclpy', 'segmentation_models_pytorch'):
        source = Path(importlib.util.find_spec(name).origin)
        if source.is_relative_to(sys.prefix):  # a system package (Jetson) is not ours
            assert Path(importlib.util.cache_from_source(str(source))).is_file(), source


def test_no_colcon_prefix_warning_for_the_venv(tmp_path):
    venv = Path(sys.prefix)
    assert (venv / 'local_setup.sh').is_file() and (venv / 'local_setup.bash').is_file()
    empty = tmp_path / 'src'
    empty.mkdir()

    def build(prefix: Path) -> str:
        env = dict(os.environ, AMENT_PREFIX_PATH=str(prefix))
        return subprocess.run(
            [str(venv / 'bin' / 'colcon'), '--log-base', str(tmp_path / 'log'), 'build',
             '--base-paths', str(empty), '--build-base', str(tmp_path / 'build'),
             '--install-base', str(tmp_path / 'install')], env=env, cwd=tmp_path,
            capture_output=True, text=True, timeout=300).stderr

    assert 'WARNING' not in build(venv)  # what setup.sh and env.sh export
    assert "doesn't contain any 'local_setup" in build(empty)  # the warning it avoids


@pytest.mark.slow
def test_each_weights_mode_has_its_own_folder_and_real_says_what_to_do(tmp_path):
    for name in ('scripts', 'config', 'garments', 'models', 'install', '.venv'):
        (tmp_path / name).symlink_to(ROOT / name)  # a checkout of links: outputs stay here
    env = {k: v for k, v in os.environ.items() if k not in ('HF_HOME', 'HF_HUB_OFFLINE')}
    env['HF_HUB_CACHE'] = str(tmp_path / 'hub')  # no real weights in it
    done = subprocess.run(['bash', 'scripts/demo.sh', 'real'], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "run 'fetch_weights' on a machine with internet" in done.stderr
    assert "'make demo' (WEIGHTS=demo)" in done.stderr
    assert [p.name for p in (tmp_path / 'out' / 'demo').iterdir()] == ['real']
    bogus = subprocess.run(['bash', 'scripts/demo.sh', 'bogus'], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert bogus.returncode == 2 and "WEIGHTS must be demo, real or random, got 'bogus'" in \
        bogus.stderr
    assert [p.name for p in (tmp_path / 'out' / 'demo').iterdir()] == ['real']  # no 'bogus'
