"""
The parameter stack of one bringup: files, overrides and DDS environment, built in one place.

Used by launch/tryon.launch.py and ``tryon_bringup`` alike (no ROS import here). The file
stack is ``config/tryon.yaml`` (every setting), then the profiles left to right
(``cpu,demo``: ``config/cpu.yaml``, then ``config/demo.yaml``; each states only what it adds
over the ones before it), then the operator's own parameter files; later files win, as ROS
applies several ``--params-file`` arguments. The overrides (``--set``, camera source,
device, autostart) come last. Every file and value is checked against the schema.
"""

from dataclasses import dataclass
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from vton_ros.settings import files as param_files
from vton_ros.settings.package_paths import package_share
from vton_ros.settings.schema import param

BASE_FILE = 'tryon.yaml'  # the full reference: every setting of every node
# The default of both tryon_bringup --profile and the launch's profile argument: it runs on
# any machine (tryon.yaml alone wants CUDA and a webcam); profile none (or empty) is the
# paper's Jetson profile alone.
DEFAULT_PROFILE = 'cpu'
NO_PROFILE = ('', 'none')
LOOPBACK_DDS = 'fastdds_loopback.xml'  # config/: Fast DDS on this machine only
PROFILE_ENV = 'VTON_PROFILE'  # the nodes' environment: the profile, for the metrics


def parse_profiles(text: str) -> tuple[str, ...]:
    """Split ``'cpu,demo'`` into profile names, applied left to right ('' or none: none)."""
    names = tuple(n.strip() for n in (text or '').split(',') if n.strip())
    if names in ((), ('none',)):
        return ()
    if 'none' in names:
        raise ValueError(f'profile {text!r}: none means no profile and cannot be combined')
    return names


def profile_file(name: str, config_dir: Path | None = None) -> Path:
    """
    Return the overlay file of a profile: ``config/<name>.yaml``, or ``name`` as a path.

    Raises ValueError listing the shipped profiles when there is no such file.
    """
    config_dir = config_dir or package_share() / 'config'
    path = Path(name) if name.endswith(('.yaml', '.yml')) else config_dir / f'{name}.yaml'
    if not path.is_file():
        known = sorted(p.stem for p in config_dir.glob('*.yaml') if p.name != BASE_FILE)
        raise ValueError(f'unknown profile {name!r} (no file {path}); profiles: '
                         f'{", ".join(known)} (combine them: cpu,demo), or the path of your '
                         'own overlay file')
    return path


def file_stack(profile: str = DEFAULT_PROFILE, params_files: Sequence[str] = ()) -> list[Path]:
    """Return the files applied in order: tryon.yaml, the profiles, the operator's files."""
    base = package_share() / 'config' / BASE_FILE
    return [base, *(profile_file(p) for p in parse_profiles(profile)),
            *(Path(f) for f in params_files)]


def overrides(sets: Sequence[str] = (), *, camera_source: str = '', device: str = '',
              autostart: bool | None = None, metrics_port: int | str | None = None
              ) -> dict[str, Any]:
    """
    Return the validated {setting: value} overrides of the command line or launch arguments.

    sets: ``NAME=VALUE`` strings (``--set``); camera_source: ``camera.source``; device:
    ``catvton.device`` and ``segmentation.device``; autostart: ``lifecycle.autostart``
    (None: the files' value). Empty strings leave the files' values; the shortcuts win
    over ``sets``. metrics_port: ``metrics.port``, a number or its text as a launch argument
    (None: the files' value).
    """
    out = param_files.parse_overrides(sets)
    shortcuts = {'camera.source': camera_source, 'catvton.device': device,
                 'segmentation.device': device, 'lifecycle.autostart': autostart,
                 'metrics.port': metrics_port}
    for name, value in shortcuts.items():
        if value not in ('', None):
            out[name] = param(name).validate(value)
    return out


@dataclass(frozen=True)
class Stack:
    """
    What every node of one bringup gets.

    files: the parameter files in order (later wins); overrides: {setting: value} applied
    after them to every node that declares the setting; namespace: '/' or '/a/b';
    settings: {node: {setting: value}}, the files and overrides as the nodes see them.
    """

    files: tuple[Path, ...]
    overrides: Mapping[str, Any]
    namespace: str
    settings: Mapping[str, Mapping[str, Any]]

    def node_overrides(self, node: str) -> dict[str, Any]:
        """Return the overrides that ``node`` declares (for launch's per-node parameters)."""
        return {name: value for name, value in self.overrides.items()
                if node in param(name).nodes}


def build(profile: str = DEFAULT_PROFILE, params_files: Sequence[str] = (),
          namespace: str = '', sets: Sequence[str] = (), *, camera_source: str = '',
          device: str = '', autostart: bool | None = None,
          metrics_port: int | str | None = None) -> Stack:
    """
    Build and check the stack of a bringup (ValueError or OSError saying what is wrong).

    profile: comma-separated profiles (:func:`parse_profiles`); params_files: the
    operator's files; the rest: :func:`overrides`.
    """
    namespace = param_files.normalize_namespace(namespace)
    files = tuple(file_stack(profile, params_files))
    extra = overrides(sets, camera_source=camera_source, device=device, autostart=autostart,
                      metrics_port=metrics_port)
    settings = param_files.merge(param_files.load_files(files, namespace), extra)
    return Stack(files, extra, namespace, settings)


def dds_environment(env: Mapping[str, str], profile: str | None = None) -> dict[str, str]:
    """
    Return the variables to add to ``env`` for the node processes' DDS traffic.

    profile None: the Fast DDS profile ``env`` already names, else the loopback-only one
    (config/fastdds_loopback.xml: this machine only). A path: that Fast DDS profile (the
    hook for a LAN mode, an explicit operator choice).
    """
    if profile is None:
        if env.get('FASTDDS_DEFAULT_PROFILES_FILE'):
            return {}
        profile = str(package_share() / 'config' / LOOPBACK_DDS)
    if not os.path.isfile(profile):
        raise ValueError(f'no Fast DDS profile file {profile}')
    return {'FASTDDS_DEFAULT_PROFILES_FILE': profile,
            'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SYSTEM_DEFAULT'}


def profile_environment(profile: str) -> dict[str, str]:
    """Return ``{VTON_PROFILE: 'cpu,demo'}`` (none: no profile) for the nodes' metrics."""
    return {PROFILE_ENV: ','.join(parse_profiles(profile)) or 'none'}
