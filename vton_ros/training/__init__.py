"""Training of the agnostic-mask U-Net: datasets, background composition, the loop."""

from vton_ros.compat import ensure_torchvision

ensure_torchvision()
