"""What a newcomer meets first: missing-weights messages, tool help, quiet setup."""

import os
from pathlib import Path
import subprocess
import sys

ROOT = Path(__file__).resolve().parents[1]


def run_tool(module: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m vton_ros.tools.<module>`` and capture its output."""
    return subprocess.run([sys.executable, '-m', f'vton_ros.tools.{module}', *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=env if env is not None else os.environ)


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
