"""
Make torchvision importable on a CPU torch next to a CUDA-only torchvision build.

The only torchvision that matches torch 2.13.0 on PyPI is a CUDA build whose C++ ops cannot
load into the CPU torch used on CI and dev machines. Its Python side then registers fake
kernels for ``torchvision::nms`` and fails with ``RuntimeError: operator torchvision::nms
does not exist``, which also breaks timm, segmentation-models-pytorch and parts of diffusers.

:func:`ensure_torchvision` imports torchvision; only when that exact failure happens does it
declare the two missing operator schemas and import again. Python parts of torchvision then
work; its C++ ops (nms, io.decode_*) raise if called (vton_ros never calls them). On a CUDA
or Jetson install whose torchvision loads, nothing is declared.

:func:`prepare_torchvision` (what pipeline/, training/ and bench/ call in their
``__init__``) defers that to the first import of torchvision, from any module: a process
that never needs torchvision (segmentation_node with the pose masker, mirror_ui) does not
pay its 1-2 s of import time, or torch's.
"""

import importlib
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec, PathFinder
import logging
import sys

_LOG = logging.getLogger(__name__)
_SCHEMAS = (
    'nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
    'qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
)
_LIBRARIES = []  # torch.library.Library objects must outlive the process's use of the ops.


def ensure_torchvision() -> bool:
    """
    Import torchvision, declaring missing C++ op schemas if needed.

    Returns True when the schemas had to be declared (C++ ops unavailable), False when
    torchvision imported as it is.
    """
    try:
        importlib.import_module('torchvision')
        return False
    except RuntimeError as err:
        if 'torchvision::nms' not in str(err):
            raise
    import torch

    for name in [m for m in sys.modules if m == 'torchvision' or m.startswith('torchvision.')]:
        del sys.modules[name]
    lib = torch.library.Library('torchvision', 'FRAGMENT')
    for schema in _SCHEMAS:
        lib.define(schema)
    _LIBRARIES.append(lib)
    importlib.import_module('torchvision')
    _LOG.debug('torchvision C++ ops unavailable; declared nms/qnms schemas so it imports')
    return True


class _FirstImport(MetaPathFinder, Loader):
    """Turns the first ``import torchvision`` into :func:`ensure_torchvision`."""

    def find_spec(self, name: str, path=None, target=None) -> ModuleSpec | None:
        """Answer for torchvision only (also to importlib.util.find_spec, which loads none)."""
        real = PathFinder.find_spec(name, path) if name == 'torchvision' else None
        return real and ModuleSpec(name, self, origin=real.origin, is_package=True)

    def create_module(self, spec: ModuleSpec) -> None:
        """Use the default module: a placeholder that exec_module replaces."""
        return None

    def exec_module(self, module) -> None:
        """Import the real torchvision; importlib then returns what sys.modules holds."""
        sys.meta_path.remove(self)
        del sys.modules['torchvision']
        ensure_torchvision()


def prepare_torchvision() -> None:
    """Make the first import of torchvision go through :func:`ensure_torchvision`."""
    if 'torchvision' not in sys.modules and not any(
            isinstance(finder, _FirstImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _FirstImport())
