"""
What tryon_bringup checks before it starts a node: torch-free, offline, quick.

Without the CatVTON weights tryon_server would start, fail to load and stop everything
with a long error. :func:`missing_weights` finds the weight settings whose folder, or
whose Hugging Face cache entry, is not on this machine (only a presence check: the server
checks the files themselves); :func:`weights_advice` says what to do in three lines, the
first pointing at the demo model that ships with the package.
"""

import os
from pathlib import Path
from typing import Any, Mapping

from vton_ros.settings import package_paths, schema

WEIGHT_SETTINGS = ('catvton.base_model', 'catvton.vae', 'catvton.attn_ckpt')


def hub_cache() -> Path:
    """Return the Hugging Face hub cache folder the server would read (from the env)."""
    if os.environ.get('HF_HUB_CACHE'):
        return Path(os.environ['HF_HUB_CACHE']).expanduser()
    home = os.environ.get('HF_HOME') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or '~/.cache', 'huggingface')
    return Path(home).expanduser() / 'hub'


def _present(value: str) -> bool:
    """Tell whether a folder setting exists, or a hub id has a snapshot in the cache."""
    path = Path(package_paths.resolve(value)).expanduser()
    if path.is_dir():
        return True
    if value.count('/') != 1 or value.startswith(('.', '/', '~')):
        return False  # a folder path that does not exist
    snapshots = hub_cache() / f'models--{value.replace("/", "--")}' / 'snapshots'
    return snapshots.is_dir() and any(snapshots.iterdir())


def missing_weights(settings: Mapping[str, Any]) -> list[str]:
    """
    Return ``name=value`` of tryon_server's weight settings that are not on this machine.

    settings: tryon_server's settings from the files and overrides (schema defaults fill
    the rest). Empty when the server may download (catvton.allow_download) or runs an
    ONNX export instead.
    """
    merged = dict(schema.defaults('tryon_server'), **settings)
    if merged.get('catvton.allow_download') or merged.get('catvton.backend') != 'torch':
        return []
    return [f'{name}={merged[name]}' for name in WEIGHT_SETTINGS
            if not _present(str(merged[name]))]


def weights_advice(missing: list[str]) -> list[str]:
    """Return the three lines tryon_bringup prints for missing weights."""
    return ['the CatVTON weights are not on this machine: try the bundled demo model with '
            '`tryon_bringup --profile cpu,demo`',
            f'missing: {", ".join(missing)} (hub cache {hub_cache()})',
            'real weights: run `fetch_weights` on a machine with internet (README, '
            '"Model weights"), or --set catvton.base_model=FOLDER ...']
