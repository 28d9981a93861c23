"""Pure torch/numpy try-on pipeline and mask models (no ROS below this package)."""

from vton_ros.compat import ensure_torchvision

ensure_torchvision()  # before diffusers/timm/smp import torchvision (no-op where ops load)
