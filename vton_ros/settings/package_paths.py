"""
``package://PACKAGE/PATH`` file and folder settings, as ROS uses for camera_info URLs.

A setting such as ``catvton.base_model: package://vton_ros/models/demo/base`` names a path
inside a package's share folder, so one profile works from any install. The share folder
comes from the ament index (an installed or sourced workspace); without one, vton_ros
itself resolves against this source tree. Anything else is returned unchanged. No ROS
runtime import: ament_index_python only reads the index folders.
"""

from pathlib import Path

PACKAGE = 'vton_ros'
SCHEME = 'package://'
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the repository (source tree) root


def package_share(package: str = PACKAGE) -> Path:
    """Return a package's share folder; vton_ros falls back to the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(package))
    except (ImportError, LookupError, ValueError):
        if package == PACKAGE:
            return SOURCE_ROOT
        raise ValueError(f'{SCHEME}{package}/...: package {package!r} is not in the ament '
                         'index (source its workspace, e.g. install/setup.bash)') from None


def resolve(value: str) -> str:
    """Return ``value`` with a leading ``package://PACKAGE/`` replaced by its share folder."""
    if not isinstance(value, str) or not value.startswith(SCHEME):
        return value
    package, _, rest = value[len(SCHEME):].partition('/')
    if not package:
        raise ValueError(f'{value!r}: write {SCHEME}PACKAGE/PATH, e.g. '
                         f'{SCHEME}{PACKAGE}/models/demo/base')
    return str(package_share(package) / rest)
