"""ament's flake8 and pep257 checks, as `colcon test` runs them on a real ROS install."""

from ament_flake8.main import main_with_errors as flake8_main
from ament_pep257.main import main as pep257_main
import pytest

from rosutil import ROOT

PATHS = [str(ROOT / p) for p in ('vton_ros', 'test', 'launch', 'setup.py')]


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8():
    rc, errors = flake8_main(argv=PATHS)
    assert rc == 0, f'{len(errors)} flake8 error(s):\n' + '\n'.join(errors)


@pytest.mark.pep257
@pytest.mark.linter
def test_pep257():
    rc = pep257_main(argv=[str(ROOT / 'vton_ros')])
    assert rc == 0, 'pep257 errors (printed above)'
