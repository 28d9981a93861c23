"""
Command-line tools (console_scripts) of vton_ros.

This package is the tools' entry: importing it makes torchvision importable on a CPU torch
(the one process-wide change, before any tool imports diffusers, timm or smp).
"""

from vton_ros.compat import ensure_torchvision

ensure_torchvision()
