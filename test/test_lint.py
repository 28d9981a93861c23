"""ament's flake8 and pep257 checks, as `colcon test` runs them on a real ROS install."""

import subprocess
import sys

import pytest

from rosutil import ROOT

PATHS = [str(ROOT / p) for p in ('vton_ros', 'test', 'launch', 'setup.py')]


def _run(module: str, paths: list) -> subprocess.CompletedProcess:
    """
    Run an ament linter in a fresh process.

    flake8 forks a process pool; forked from a pytest process in which rclpy threads ran
    (the in-process ROS tests), the workers can crash and hang the run.
    """
    code = f'import sys; from {module}.main import main; sys.exit(main(sys.argv[1:]))'
    return subprocess.run([sys.executable, '-c', code, *paths], cwd=ROOT, text=True,
                          capture_output=True, timeout=600)


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8():
    proc = _run('ament_flake8', PATHS)
    assert proc.returncode == 0, f'flake8 errors:\n{proc.stdout}{proc.stderr}'


@pytest.mark.pep257
@pytest.mark.linter
def test_pep257():
    proc = _run('ament_pep257', [str(ROOT / 'vton_ros')])
    assert proc.returncode == 0, f'pep257 errors:\n{proc.stdout}{proc.stderr}'
