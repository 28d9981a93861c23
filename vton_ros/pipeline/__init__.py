"""
Pure torch/numpy try-on pipeline and mask models (no ROS below this package).

Importing it makes torchvision importable (:func:`vton_ros.compat.prepare_torchvision`: at
the first import of torchvision, on a CPU torch beside the CUDA-only torchvision wheel, it
declares two missing op schemas; elsewhere it changes nothing), so any module below may
import diffusers, timm or smp. It imports neither torch nor torchvision itself.
"""

from vton_ros.compat import prepare_torchvision

prepare_torchvision()
