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
"""

import importlib
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
