"""
Pure torch/numpy try-on pipeline and mask models (no ROS below this package).

Importing it first makes torchvision importable (:func:`vton_ros.compat.ensure_torchvision`:
on a CPU torch beside the CUDA-only torchvision wheel it declares two missing op schemas;
elsewhere it changes nothing), so any module below may import diffusers, timm or smp.
"""

from vton_ros.compat import ensure_torchvision

ensure_torchvision()
